/* The job's communicator (kiln/dist.h): Open MPI when built with it, a world of one without. */
#include "kiln/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../backend-impl.h"

#ifdef KILN_HAVE_MPI
#include <mpi.h>
#endif

#define DEFAULT_TIMEOUT_S 300.0
#define MAX_REQS          4096

struct kiln_dist {
    int rank, size, local_rank, local_size;
    int world; /* 1: owns MPI_Init (finalize calls MPI_Finalize) */
    double timeout;
    char host[256];
#ifdef KILN_HAVE_MPI
    MPI_Comm comm;
    MPI_Request reqs[MAX_REQS];
    int nreqs;
    int op_first[MAX_REQS], op_count[MAX_REQS]; /* each sum's requests (pieces under 2^31) */
    int nops;
#endif
};

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

int kiln_dist_launched(void) {
    return env_int("OMPI_COMM_WORLD_SIZE", 1) > 1 || env_int("PMI_SIZE", 1) > 1;
}

int kiln_dist_built(void) {
#ifdef KILN_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

static kiln_dist_t make(void) {
    kiln_dist_t d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->size = d->local_size = 1;
    d->timeout = DEFAULT_TIMEOUT_S;
    if (gethostname(d->host, sizeof d->host - 1)) snprintf(d->host, sizeof d->host, "?");
    return d;
}

kiln_status kiln_dist_init(int *argc, char ***argv, kiln_dist_t *out) {
    *out = NULL;
#ifndef KILN_HAVE_MPI
    (void)argc, (void)argv;
    if (kiln_dist_launched())
        return kiln_error(KILN_UNSUPPORTED,
                          "started by mpirun with %d ranks, but this kiln was built without MPI "
                          "(every rank would train alone): apt-get install libopenmpi-dev and "
                          "rebuild (cmake -DKILN_MPI=ON)",
                          env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 1)));
#endif
    kiln_dist_t d = make();
    if (!d) return kiln_error(KILN_OUT_OF_MEMORY, "dist: out of memory");
#ifdef KILN_HAVE_MPI
    d->comm = MPI_COMM_NULL;
    if (kiln_dist_launched()) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited && MPI_Init(argc, argv) != MPI_SUCCESS) {
            free(d);
            return kiln_error(KILN_IO, "MPI_Init failed");
        }
        d->world = !inited;
        d->comm = MPI_COMM_WORLD;
        /* Errors come back as codes (reported with the rank), not as MPI's own abort. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(d->comm, &d->rank);
        MPI_Comm_size(d->comm, &d->size);
        d->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
        d->local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    }
#endif
    *out = d;
    return KILN_OK;
}

void kiln_dist_finalize(kiln_dist_t d) {
    if (!d) return;
#ifdef KILN_HAVE_MPI
    if (d->comm != MPI_COMM_NULL && d->comm != MPI_COMM_WORLD) MPI_Comm_free(&d->comm);
    if (d->world) MPI_Finalize();
#endif
    free(d);
}

int kiln_dist_rank(kiln_dist_t d) {
    return d ? d->rank : 0;
}
int kiln_dist_size(kiln_dist_t d) {
    return d ? d->size : 1;
}
int kiln_dist_local_rank(kiln_dist_t d) {
    return d ? d->local_rank : 0;
}
int kiln_dist_local_size(kiln_dist_t d) {
    return d ? d->local_size : 1;
}
const char *kiln_dist_host(kiln_dist_t d) {
    return d ? d->host : "";
}
void kiln_dist_set_timeout(kiln_dist_t d, double seconds) {
    if (d) d->timeout = seconds > 0 ? seconds : DEFAULT_TIMEOUT_S;
}

void kiln_dist_abort(kiln_dist_t d, int code, const char *msg) {
    fprintf(stderr, "kiln: rank %d of %d on %s: %s\n", kiln_dist_rank(d), kiln_dist_size(d),
            kiln_dist_host(d), msg);
    fflush(stderr);
#ifdef KILN_HAVE_MPI
    if (d && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
#else
    (void)code;
#endif
}

#ifdef KILN_HAVE_MPI

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kiln_status mpi_fail(kiln_dist_t d, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return kiln_error(KILN_IO, "%s on rank %d of %d (%s): %s", what, d->rank, d->size, d->host, s);
}

/* Waits for requests with the deadline: a few spins, then sleeps growing to 1 ms. */
static kiln_status wait_reqs(kiln_dist_t d, int n, MPI_Request *r, const char *what) {
    double t0 = now_s();
    for (int k = 0;; k++) {
        int done = 0;
        int rc = MPI_Testall(n, r, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        if (done) return KILN_OK;
        if (now_s() - t0 > d->timeout)
            return kiln_error(KILN_IO,
                              "%s: no answer from the other ranks for %.0f s (a rank died or "
                              "hangs; --mpi-timeout sets the limit)",
                              what, d->timeout);
        if (k > 64) {
            struct timespec ts = {0, k < 1000 ? 20000L : 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

kiln_status kiln_dist_sub(kiln_dist_t d, int n, kiln_dist_t *out) {
    *out = NULL;
    if (n < 1 || n > kiln_dist_size(d))
        return kiln_error(KILN_INVALID_ARGUMENT, "dist: %d ranks asked of %d", n,
                          kiln_dist_size(d));
    kiln_dist_t s = make();
    if (!s) return kiln_error(KILN_OUT_OF_MEMORY, "dist: out of memory");
    s->comm = MPI_COMM_NULL;
    s->timeout = d->timeout;
    s->local_rank = d->local_rank, s->local_size = d->local_size;
    if (d->size > 1) {
        int rc = MPI_Comm_split(d->comm, d->rank < n ? 0 : MPI_UNDEFINED, d->rank, &s->comm);
        if (rc != MPI_SUCCESS) {
            free(s);
            return mpi_fail(d, rc, "MPI_Comm_split");
        }
    }
    if (d->rank >= n) {
        free(s);
        return KILN_OK;
    }
    if (s->comm != MPI_COMM_NULL) {
        MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(s->comm, &s->rank);
        MPI_Comm_size(s->comm, &s->size);
    }
    *out = s;
    return KILN_OK;
}

kiln_status kiln_dist_barrier(kiln_dist_t d) {
    if (kiln_dist_size(d) < 2) return KILN_OK;
    MPI_Request r;
    int rc = MPI_Ibarrier(d->comm, &r);
    return rc != MPI_SUCCESS ? mpi_fail(d, rc, "barrier") : wait_reqs(d, 1, &r, "barrier");
}

kiln_status kiln_dist_bcast(kiln_dist_t d, void *buf, size_t bytes) {
    if (kiln_dist_size(d) < 2) return KILN_OK;
    /* In pieces under 2 GiB: MPI counts are ints. */
    const size_t piece = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += piece) {
        size_t n = bytes - off < piece ? bytes - off : piece;
        MPI_Request r;
        int rc = MPI_Ibcast((char *)buf + off, (int)n, MPI_BYTE, 0, d->comm, &r);
        kiln_status st =
            rc != MPI_SUCCESS ? mpi_fail(d, rc, "broadcast") : wait_reqs(d, 1, &r, "broadcast");
        if (st) return st;
    }
    return KILN_OK;
}

kiln_status kiln_dist_sum(kiln_dist_t d, double *x, int n) {
    if (kiln_dist_size(d) < 2) return KILN_OK;
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, d->comm, &r);
    return rc != MPI_SUCCESS ? mpi_fail(d, rc, "all-reduce") : wait_reqs(d, 1, &r, "all-reduce");
}

kiln_status kiln_dist_gather(kiln_dist_t d, const double *x, int n, double *all) {
    if (kiln_dist_size(d) < 2) {
        memcpy(all, x, sizeof *x * (size_t)n);
        return KILN_OK;
    }
    MPI_Request r;
    int rc = MPI_Iallgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, d->comm, &r);
    return rc != MPI_SUCCESS ? mpi_fail(d, rc, "all-gather") : wait_reqs(d, 1, &r, "all-gather");
}

kiln_status kiln_dist_isum_f32(kiln_dist_t d, float *x, int64_t n, int *handle) {
    *handle = 0;
    if (kiln_dist_size(d) < 2) return KILN_OK;
    const int64_t piece = (int64_t)1 << 28;
    if (d->nops == MAX_REQS)
        return kiln_error(KILN_INVALID_ARGUMENT, "dist: more than %d all-reduce buckets", MAX_REQS);
    *handle = d->nops;
    d->op_first[d->nops] = d->nreqs;
    d->op_count[d->nops] = 0;
    d->nops++;
    for (int64_t off = 0; off < n; off += piece) {
        if (d->nreqs == MAX_REQS)
            return kiln_error(KILN_INVALID_ARGUMENT, "dist: more than %d all-reduce pieces",
                              MAX_REQS);
        int64_t m = n - off < piece ? n - off : piece;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, x + off, (int)m, MPI_FLOAT, MPI_SUM, d->comm,
                                &d->reqs[d->nreqs]);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, "gradient all-reduce");
        d->nreqs++;
        d->op_count[*handle]++;
    }
    return KILN_OK;
}

kiln_status kiln_dist_progress(kiln_dist_t d) {
    if (kiln_dist_size(d) < 2 || !d->nreqs) return KILN_OK;
    int done = 0;
    int rc = MPI_Testall(d->nreqs, d->reqs, &done, MPI_STATUSES_IGNORE);
    return rc != MPI_SUCCESS ? mpi_fail(d, rc, "gradient all-reduce") : KILN_OK;
}

kiln_status kiln_dist_test(kiln_dist_t d, int handle, int *done) {
    *done = 1;
    if (kiln_dist_size(d) < 2) return KILN_OK;
    if (handle < 0 || handle >= d->nops)
        return kiln_error(KILN_INVALID_ARGUMENT, "dist: no all-reduce %d", handle);
    int rc =
        MPI_Testall(d->op_count[handle], d->reqs + d->op_first[handle], done, MPI_STATUSES_IGNORE);
    return rc != MPI_SUCCESS ? mpi_fail(d, rc, "gradient all-reduce") : KILN_OK;
}

kiln_status kiln_dist_wait(kiln_dist_t d, int handle) {
    if (kiln_dist_size(d) < 2) return KILN_OK;
    if (handle < 0 || handle >= d->nops)
        return kiln_error(KILN_INVALID_ARGUMENT, "dist: no all-reduce %d", handle);
    return wait_reqs(d, d->op_count[handle], d->reqs + d->op_first[handle], "gradient all-reduce");
}

kiln_status kiln_dist_wait_all(kiln_dist_t d) {
    if (kiln_dist_size(d) < 2 || !d->nreqs) return KILN_OK;
    kiln_status st = wait_reqs(d, d->nreqs, d->reqs, "gradient all-reduce");
    d->nreqs = d->nops = 0;
    return st;
}

#else /* a world of one */

kiln_status kiln_dist_sub(kiln_dist_t d, int n, kiln_dist_t *out) {
    *out = NULL;
    if (n != 1) return kiln_error(KILN_INVALID_ARGUMENT, "dist: %d ranks asked of 1", n);
    if (!(*out = make())) return kiln_error(KILN_OUT_OF_MEMORY, "dist: out of memory");
    (*out)->timeout = d ? d->timeout : DEFAULT_TIMEOUT_S;
    return KILN_OK;
}
kiln_status kiln_dist_barrier(kiln_dist_t d) {
    return KILN_OK;
}
kiln_status kiln_dist_bcast(kiln_dist_t d, void *buf, size_t bytes) {
    return KILN_OK;
}
kiln_status kiln_dist_sum(kiln_dist_t d, double *x, int n) {
    return KILN_OK;
}
kiln_status kiln_dist_gather(kiln_dist_t d, const double *x, int n, double *all) {
    memcpy(all, x, sizeof *x * (size_t)n);
    return KILN_OK;
}
kiln_status kiln_dist_isum_f32(kiln_dist_t d, float *x, int64_t n, int *handle) {
    *handle = 0;
    return KILN_OK;
}
kiln_status kiln_dist_test(kiln_dist_t d, int handle, int *done) {
    *done = 1;
    return KILN_OK;
}
kiln_status kiln_dist_wait(kiln_dist_t d, int handle) {
    return KILN_OK;
}
kiln_status kiln_dist_progress(kiln_dist_t d) {
    return KILN_OK;
}
kiln_status kiln_dist_wait_all(kiln_dist_t d) {
    return KILN_OK;
}

#endif
