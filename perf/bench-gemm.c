/* `kiln bench gemm`: GEMM on the cpu (OpenBLAS), opencl and clblast backends in one run, as
   ratios to OpenBLAS, plus cold and warm program-cache time to first result. */
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"
#include "bench.h"
#include "kiln/kiln.h"

extern char **environ;

typedef struct {
    long m, n, k;
} gemm_shape;

typedef struct {
    gemm_shape s;
    char backend[16];
    char device[128];
    double ms, ms_min, ms_max, gflops, ratio;
    int reps;
    double max_err;
    double first_done; /* kiln_now_ms() when the first (warm-up) result was ready */
    double of_peak;    /* fraction of the device's measured peak (0: not comparable) */
} gemm_row;

static const gemm_shape default_shapes[] = {
    {256, 256, 256},    {512, 512, 512}, {1024, 1024, 1024},
    {2048, 2048, 2048}, {64, 3136, 576}, {4096, 64, 4096},
};

static int parse_shapes(const char *list, gemm_shape **out, int *count) {
    int cap = 8, n = 0;
    gemm_shape *s = malloc(sizeof *s * (size_t)cap);
    const char *p = list;
    while (s && *p) {
        long v[3];
        int nv = 0;
        char *end;
        while (nv < 3) {
            v[nv] = strtol(p, &end, 10);
            if (end == p || v[nv] <= 0) goto bad;
            nv++;
            p = end;
            if (*p != 'x') break;
            p++;
        }
        if (nv == 2) goto bad;
        if (n == cap) {
            gemm_shape *g = realloc(s, sizeof *s * (size_t)(cap *= 2));
            if (!g) goto bad;
            s = g;
        }
        s[n++] = nv == 1 ? (gemm_shape){v[0], v[0], v[0]} : (gemm_shape){v[0], v[1], v[2]};
        if (*p == ',')
            p++;
        else if (*p)
            goto bad;
    }
    if (!s || !n) goto bad;
    *out = s;
    *count = n;
    return 1;
bad:
    free(s);
    return 0;
}

/* Times one GEMM on one backend; returns 0 on failure (message printed). */
static int time_gemm(kiln_backend_t be, gemm_shape s, const float *ha, const float *hb,
                     float *hc_out, double min_ms_total, gemm_row *row) {
    int64_t sa[2] = {s.m, s.k}, sb[2] = {s.k, s.n}, sc[2] = {s.m, s.n};
    kiln_tensor a, b, c;
    int ok = 0;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    if (kiln_tensor_alloc(&a, be, KILN_F32, 2, sa) || kiln_tensor_alloc(&b, be, KILN_F32, 2, sb) ||
        kiln_tensor_alloc(&c, be, KILN_F32, 2, sc) ||
        kiln_tensor_set(&a, ha, sizeof(float) * (size_t)(s.m * s.k)) ||
        kiln_tensor_set(&b, hb, sizeof(float) * (size_t)(s.k * s.n)))
        goto out;
    /* Warm-up: builds kernels, faults pages, lets clocks settle. */
    if (kiln_gemm(be, 0, 0, 1.0f, &a, &b, 0.0f, &c) || kiln_backend_synchronize(be)) goto out;
    row->first_done = kiln_now_ms();
    double times[200];
    int reps = 0;
    double total = 0;
    while (reps < 200 && (reps < 5 || total < min_ms_total)) {
        double t0 = kiln_now_ms();
        if (kiln_gemm(be, 0, 0, 1.0f, &a, &b, 0.0f, &c) || kiln_backend_synchronize(be)) goto out;
        times[reps] = kiln_now_ms() - t0;
        total += times[reps++];
    }
    if (kiln_tensor_get(&c, hc_out, sizeof(float) * (size_t)(s.m * s.n))) goto out;
    row->reps = reps;
    row->ms = kiln_median(times, reps);
    row->ms_min = times[0];
    row->ms_max = times[reps - 1];
    row->gflops = 2.0 * (double)s.m * (double)s.n * (double)s.k / (row->ms * 1e6);
    ok = 1;
out:
    if (!ok) fprintf(stderr, "kiln bench gemm: %s: %s\n", kiln_backend_name(be), kiln_last_error());
    kiln_tensor_release(&a);
    kiln_tensor_release(&b);
    kiln_tensor_release(&c);
    return ok;
}

/* Runs `kiln bench cache-probe` in a fresh process; returns its time to first result. */
static int run_probe(const char *self, double *child_ms, double *wall_ms, int *compiled,
                     int *loaded, int *driver) {
    int fds[2];
    if (pipe(fds)) return 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *argv[] = {(char *)self, "bench", "cache-probe", NULL};
    pid_t pid;
    double t0 = kiln_now_ms();
    int rc = posix_spawn(&pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        return 0;
    }
    char buf[256] = "";
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    *wall_ms = kiln_now_ms() - t0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
           sscanf(buf, "cache-probe ms=%lf compiled=%d loaded=%d driver=%d", child_ms, compiled,
                  loaded, driver) == 4;
}

int kiln_bench_cache_probe(void) {
    double t0 = kiln_now_ms();
    kiln_backend_t be;
    if (kiln_backend_init(NULL, NULL, &be)) {
        fprintf(stderr, "cache-probe: %s\n", kiln_last_error());
        return 1;
    }
    gemm_shape s = {256, 256, 256};
    float *h = calloc((size_t)(3 * 256 * 256), sizeof *h);
    gemm_row row;
    int ok = h && time_gemm(be, s, h, h, h + 2 * 256 * 256, 0, &row);
    double ms = row.first_done - t0;
    kiln_backend_stats st;
    kiln_backend_get_stats(be, &st);
    kiln_backend_free(be);
    free(h);
    if (!ok) return 1;
    /* Time to first result: backend start, kernel build or cache load, first GEMM. */
    printf("cache-probe ms=%.1f compiled=%d loaded=%d driver=%d\n", ms, st.programs_compiled,
           st.programs_loaded, st.programs_driver);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: kiln bench gemm [--sizes LIST] [--backends LIST] [--json FILE] "
               "[--min-ms MS] [--no-cache-probe]\n"
               "  --sizes     comma list of N (square) or MxNxK; default "
               "256,512,1024,2048,64x3136x576,4096x64x4096\n"
               "  --backends  comma list of cpu, opencl, clblast; default all available\n"
               "  --json      write the results as a JSON array\n"
               "  --min-ms    time each case for at least this long (default 300; >= 5 runs)\n"
               "  --no-cache-probe  skip the cold/warm program-cache measurement\n"
               "The OpenCL device is KILN_DEVICE's choice (kiln devices).\n");
}

int kiln_bench_gemm(int argc, char **argv, const char *self) {
    gemm_shape *shapes = NULL;
    int nshapes = 0;
    const char *json = NULL, *backends = "cpu,opencl,clblast";
    long min_ms = 300;
    int probe = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--sizes") && v) {
            free(shapes);
            if (!parse_shapes(v, &shapes, &nshapes)) {
                fprintf(stderr, "kiln bench gemm: bad --sizes '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--json") && v) {
            json = v;
            i++;
        } else if (!strcmp(a, "--backends") && v) {
            backends = v;
            i++;
        } else if (!strcmp(a, "--min-ms") && v && kiln_parse_count(v, &min_ms)) {
            i++;
        } else if (!strcmp(a, "--no-cache-probe")) {
            probe = 0;
        } else {
            fprintf(stderr, "kiln bench gemm: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            free(shapes);
            return 2;
        }
    }
    if (!shapes) {
        nshapes = (int)(sizeof default_shapes / sizeof default_shapes[0]);
        shapes = malloc(sizeof default_shapes);
        if (!shapes) return 1;
        memcpy(shapes, default_shapes, sizeof default_shapes);
    }

    /* Backends in the order given; cpu is always first as the reference. */
    const char *names[3] = {"cpu", "opencl", "clblast"};
    kiln_backend_t bes[3] = {0};
    int nb = 0;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(names[i]);
        const char *p = strstr(backends, names[i]);
        if (!p || (p[len] && p[len] != ',')) {
            if (i == 0) {
                fprintf(
                    stderr,
                    "kiln bench gemm: the cpu backend is the reference; keep it in --backends\n");
                free(shapes);
                return 2;
            }
            continue;
        }
        if (kiln_backend_init(names[i], NULL, &bes[i])) {
            fprintf(stderr, "kiln bench gemm: skipping %s: %s\n", names[i], kiln_last_error());
            bes[i] = NULL;
            continue;
        }
        nb++;
    }
    const kiln_device_info *dev = bes[1]   ? kiln_backend_device(bes[1])
                                  : bes[2] ? kiln_backend_device(bes[2])
                                           : NULL;
    /* The device's measured peak; on a CPU device it is also the host's (same cores). */
    double peak = 0;
    kiln_backend_t peak_be = bes[1] ? bes[1] : bes[2];
    if (peak_be && kiln_bench_peak(peak_be, &peak))
        fprintf(stderr, "kiln bench gemm: peak probe failed: %s\n", kiln_last_error());
    printf("kiln bench gemm: %d backends; OpenCL device: %s", nb, dev ? dev->name : "none");
    if (peak > 0) printf(" (measured peak %.0f GFLOP/s)", peak);
    printf("\n");
    printf("median of >= 5 runs (at least %ld ms per case) after one warm-up; ratio = GFLOP/s / "
           "OpenBLAS GFLOP/s in this run\n\n",
           min_ms);
    printf("%-18s %-8s %10s %10s %8s %8s %10s\n", "shape (MxNxK)", "backend", "ms", "GFLOP/s",
           "ratio", "of peak", "max err");

    gemm_row *rows = calloc((size_t)nshapes * 3, sizeof *rows);
    int nrows = 0, failed = 0;
    double log_ratio[3] = {0};
    int nratio[3] = {0};
    for (int si = 0; si < nshapes && rows; si++) {
        gemm_shape s = shapes[si];
        size_t na = (size_t)(s.m * s.k), nbb = (size_t)(s.k * s.n), nc = (size_t)(s.m * s.n);
        float *ha = malloc(na * sizeof *ha), *hb = malloc(nbb * sizeof *hb);
        float *ref = malloc(nc * sizeof *ref), *out = malloc(nc * sizeof *out);
        if (!ha || !hb || !ref || !out) {
            fprintf(stderr, "kiln bench gemm: out of host memory for %ldx%ldx%ld\n", s.m, s.n, s.k);
            failed = 1;
        } else {
            kiln_fill_uniform(ha, na, 1);
            kiln_fill_uniform(hb, nbb, 2);
            double cpu_gflops = 0;
            for (int bi = 0; bi < 3; bi++) {
                if (!bes[bi]) continue;
                /* OpenBLAS threads spin for a while after a call; let them sleep before
                   another backend needs the cores. */
                usleep(100000);
                gemm_row *r = &rows[nrows];
                r->s = s;
                snprintf(r->backend, sizeof r->backend, "%s", names[bi]);
                snprintf(r->device, sizeof r->device, "%s", kiln_backend_device(bes[bi])->name);
                if (!time_gemm(bes[bi], s, ha, hb, bi ? out : ref, (double)min_ms, r)) {
                    failed = 1;
                    continue;
                }
                if (bi == 0) cpu_gflops = r->gflops;
                double err = 0;
                if (bi)
                    for (size_t i = 0; i < nc; i++) {
                        double d = fabs((double)out[i] - ref[i]) / sqrt((double)s.k);
                        err = d > err ? d : err;
                    }
                r->max_err = err;
                r->ratio = cpu_gflops > 0 ? r->gflops / cpu_gflops : 0;
                if (bi && r->ratio > 0) {
                    log_ratio[bi] += log(r->ratio);
                    nratio[bi]++;
                }
                char shape[32];
                snprintf(shape, sizeof shape, "%ldx%ldx%ld", s.m, s.n, s.k);
                /* The host's cores are the device's only when the device is a CPU. */
                r->of_peak =
                    peak > 0 && (bi || dev->type == KILN_DEVICE_CPU) ? r->gflops / peak : 0;
                printf("%-18s %-8s %10.3f %10.1f %8.3f %8.3f %10.2e%s\n", shape, r->backend, r->ms,
                       r->gflops, r->ratio, r->of_peak, err, err > 1e-4 ? "  MISMATCH" : "");
                if (err > 1e-4) failed = 1;
                fflush(stdout);
                nrows++;
            }
        }
        free(ha);
        free(hb);
        free(ref);
        free(out);
    }
    printf("\n");
    for (int bi = 1; bi < 3; bi++)
        if (nratio[bi])
            printf("geometric mean ratio to OpenBLAS, %s: %.3f over %d shapes\n", names[bi],
                   exp(log_ratio[bi] / nratio[bi]), nratio[bi]);

    /* Program cache: a cold process compiles, a second process must load everything. */
    double probe_ms[2] = {0}, probe_wall[2] = {0};
    int probe_compiled[2] = {0}, probe_loaded[2] = {0}, probe_driver[2] = {0}, probed = 0;
    if (probe && bes[1]) {
        char dir[] = "/tmp/kiln-cache-probe-XXXXXX";
        if (mkdtemp(dir)) {
            char *saved_cache = kiln_save_env("KILN_CACHE_DIR");
            char *saved_pocl = kiln_save_env("POCL_CACHE_DIR");
            char *saved_backend = kiln_save_env("KILN_BACKEND");
            setenv("KILN_BACKEND", "opencl", 1);
            kiln_fresh_caches(dir);
            probed = run_probe(self, &probe_ms[0], &probe_wall[0], &probe_compiled[0],
                               &probe_loaded[0], &probe_driver[0]) &&
                     run_probe(self, &probe_ms[1], &probe_wall[1], &probe_compiled[1],
                               &probe_loaded[1], &probe_driver[1]);
            kiln_restore_env("KILN_BACKEND", saved_backend);
            kiln_restore_env("KILN_CACHE_DIR", saved_cache);
            kiln_restore_env("POCL_CACHE_DIR", saved_pocl);
            kiln_remove_tree(dir);
        }
        if (probed) {
            printf("program cache, opencl backend, time to first 256^3 GEMM result in a new "
                   "process:\n");
            for (int p = 0; p < 2; p++)
                printf("  %s: %8.1f ms (process %8.1f ms), programs compiled %d, loaded %d, left "
                       "to the driver's cache %d\n",
                       p ? "warm" : "cold", probe_ms[p], probe_wall[p], probe_compiled[p],
                       probe_loaded[p], probe_driver[p]);
            if (probe_compiled[1]) {
                printf("  ERROR: the warm process recompiled %d programs\n", probe_compiled[1]);
                failed = 1;
            }
        } else {
            printf("program cache probe failed\n");
            failed = 1;
        }
    }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "kiln bench gemm: cannot write %s\n", json);
            failed = 1;
        } else {
            fprintf(f, "[\n");
            for (int i = 0; i < nrows; i++) {
                gemm_row *r = &rows[i];
                char shape[64];
                snprintf(shape, sizeof shape, "%ldx%ldx%ld", r->s.m, r->s.n, r->s.k);
                fprintf(f, "  {\"op\": \"gemm\", \"backend\": ");
                kiln_json_string(f, r->backend);
                fprintf(f, ", \"device\": ");
                kiln_json_string(f, r->device);
                fprintf(f,
                        ", \"shape\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"ms\": %.4f, "
                        "\"ms_min\": %.4f, \"ms_max\": %.4f, \"reps\": %d, \"gflops\": %.2f, "
                        "\"ratio_to_openblas\": %.4f, \"fraction_of_peak\": %.4f, \"peak_gflops\": "
                        "%.1f, "
                        "\"max_err\": %.3e}%s\n",
                        shape, r->s.m, r->s.n, r->s.k, r->ms, r->ms_min, r->ms_max, r->reps,
                        r->gflops, r->ratio, r->of_peak, peak, r->max_err,
                        i + 1 < nrows || probed ? "," : "");
            }
            if (probed)
                for (int p = 0; p < 2; p++)
                    fprintf(f,
                            "  {\"op\": \"program_cache\", \"backend\": \"opencl\", \"device\": "
                            "\"%s\", \"shape\": \"256x256x256\", \"cache\": \"%s\", \"ms\": %.2f, "
                            "\"process_ms\": %.2f, \"programs_compiled\": %d, "
                            "\"programs_loaded\": %d, \"programs_driver\": %d}%s\n",
                            dev ? dev->name : "", p ? "warm" : "cold", probe_ms[p], probe_wall[p],
                            probe_compiled[p], probe_loaded[p], probe_driver[p], p ? "" : ",");
            fprintf(f, "]\n");
            fclose(f);
            printf("wrote %s\n", json);
        }
    }
    for (int i = 0; i < 3; i++) kiln_backend_free(bes[i]);
    free(rows);
    free(shapes);
    return failed ? 1 : 0;
}
