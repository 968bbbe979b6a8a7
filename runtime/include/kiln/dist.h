/* Data-parallel training over Open MPI: one process (rank) per device, started by
   `mpirun -np N kiln train ...` on one host or many.

   A kiln_dist_t is the job's communicator as kiln uses it. kiln_dist_init joins the job mpirun
   started; run without mpirun (or in a build without MPI) it is a world of one rank and every
   collective returns at once, so single-process code needs no special case.

   Every collective is non-blocking underneath and waited with a deadline (the timeout, 300 s
   by default): a rank that died or hangs makes the others return KILN_IO naming the operation
   instead of waiting forever. The caller then ends the job with kiln_dist_abort, which names
   the rank and host. Waiting polls with short sleeps rather than spinning, so ranks sharing
   cores (mpirun --oversubscribe) leave them to the rank that computes. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_dist *kiln_dist_t;

/* 1 when kiln was built with MPI (the CMake option KILN_MPI, on where libopenmpi-dev is). */
int kiln_dist_built(void);
/* 1 when this process was started by mpirun with more than one rank (OMPI_COMM_WORLD_SIZE). */
int kiln_dist_launched(void);

/* Joins the job (MPI_Init) when mpirun started this process; otherwise a world of one. Under
   mpirun in a build without MPI: KILN_UNSUPPORTED (every rank would train alone). */
kiln_status kiln_dist_init(int *argc, char ***argv, kiln_dist_t *out);
/* Leaves the job (MPI_Finalize for the world; sub-communicators are only freed). */
void kiln_dist_finalize(kiln_dist_t d);

int kiln_dist_rank(kiln_dist_t d);
int kiln_dist_size(kiln_dist_t d);
/* Rank and rank count on this host (OMPI_COMM_WORLD_LOCAL_RANK / _LOCAL_SIZE). */
int kiln_dist_local_rank(kiln_dist_t d);
int kiln_dist_local_size(kiln_dist_t d);
const char *kiln_dist_host(kiln_dist_t d);
/* Seconds a collective may wait for the other ranks (0: the default, 300). */
void kiln_dist_set_timeout(kiln_dist_t d, double seconds);

/* The first n ranks as a communicator of their own (kiln bench scale); *out is NULL on the
   ranks outside it. Collective over d. */
kiln_status kiln_dist_sub(kiln_dist_t d, int n, kiln_dist_t *out);

/* Collectives over every rank of d. */
kiln_status kiln_dist_barrier(kiln_dist_t d);
kiln_status kiln_dist_bcast(kiln_dist_t d, void *buf, size_t bytes); /* from rank 0 */
kiln_status kiln_dist_sum(kiln_dist_t d, double *x, int n);          /* in place */
/* all[r * n + i] = rank r's x[i]. */
kiln_status kiln_dist_gather(kiln_dist_t d, const double *x, int n, double *all);

/* Non-blocking sum of floats in place (a gradient bucket); *handle names it within the round.
   kiln_dist_progress lets the transport move without blocking (MPI only progresses inside MPI
   calls); kiln_dist_test says whether one sum is complete, kiln_dist_wait waits for it with
   the deadline; kiln_dist_wait_all waits for every sum and ends the round. */
kiln_status kiln_dist_isum_f32(kiln_dist_t d, float *x, int64_t n, int *handle);
kiln_status kiln_dist_progress(kiln_dist_t d);
kiln_status kiln_dist_test(kiln_dist_t d, int handle, int *done);
kiln_status kiln_dist_wait(kiln_dist_t d, int handle);
kiln_status kiln_dist_wait_all(kiln_dist_t d);

/* Prints "kiln: rank R of N on HOST: msg" to stderr and ends every rank of the job
   (MPI_Abort); in a world of one it only prints. Does not return when d has several ranks. */
void kiln_dist_abort(kiln_dist_t d, int code, const char *msg);

#ifdef __cplusplus
}
#endif
#endif
