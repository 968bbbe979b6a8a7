/* Training steps of zoo models through the real trainer (kiln_trainer_step: forward, backward,
   SGD update), and the time to the first training step in a fresh process with a cold and a
   warm program/tuning cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln-util.h"
#include "bench-util.h"
#include "bench.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/train.h"

#define CLASSES 10
#define LR      0.01

void kiln_bench_step_free(kiln_bench_step *s) {
    kiln_trainer_free(s->tr);
    kiln_model_free(s->model);
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

kiln_status kiln_bench_step_init(kiln_backend_t be, const char *model, const kiln_model_config *cfg,
                                 kiln_bench_step *s) {
    return kiln_bench_step_init_dist(be, model, cfg, NULL, 0, s);
}

kiln_status kiln_bench_step_init_dist(kiln_backend_t be, const char *model,
                                      const kiln_model_config *cfg, kiln_dist_t dist,
                                      double bucket_mb, kiln_bench_step *s) {
    memset(s, 0, sizeof *s);
    kiln_status st = kiln_model_load(model, &s->model);
    kiln_model_totals tot;
    if (!st) st = kiln_model_finalize(s->model, cfg);
    if (!st) st = kiln_model_get_totals(s->model, &tot);
    if (st) return st;
    s->flops = (double)tot.flops;
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.batch = cfg->batch > 0 ? cfg->batch : 1;
    o.augment = "none";
    o.chance_steps = -1;
    o.dist = dist;
    o.allreduce_bucket_mb = bucket_mb;
    s->batch = o.batch / kiln_dist_size(dist); /* this rank's share */
    if ((st = kiln_trainer_create(s->model, be, &o, &s->tr))) return st;
    size_t px = (size_t)s->batch * (size_t)tot.input_h * (size_t)tot.input_w * (size_t)tot.input_c;
    float *u = malloc(px * sizeof *u);
    s->images = malloc(px);
    s->labels = malloc(sizeof *s->labels * (size_t)s->batch);
    if (!u || !s->images || !s->labels) {
        free(u);
        return kiln_error(KILN_OUT_OF_MEMORY, "bench train: out of host memory");
    }
    kiln_fill_uniform(u, px, 11);
    for (size_t i = 0; i < px; i++) s->images[i] = (uint8_t)(127.5f * (u[i] + 1.0f));
    for (int i = 0; i < s->batch; i++) s->labels[i] = i % (tot.classes > 0 ? tot.classes : 1);
    free(u);
    return KILN_OK;
}

kiln_status kiln_bench_step_run(kiln_bench_step *s, double lr) {
    return kiln_trainer_step(s->tr, s->images, s->labels, lr, &s->loss);
}

/* The suite's configuration: input x input x 3, 10 classes. */
static kiln_status step_init(kiln_backend_t be, const char *model, int input, int batch,
                             kiln_bench_step *s) {
    kiln_model_config cfg = {input, input, 3, CLASSES, batch};
    return kiln_bench_step_init(be, model, &cfg, s);
}

static int step_run(void *arg) {
    return kiln_bench_step_run(arg, LR) != KILN_OK;
}

int kiln_bench_train(kiln_bench_report *r, kiln_backend_t be, const char *backend_name,
                     const char *model, int input, int batch, double min_ms, double once_ms,
                     double ref_loss, double *first_loss) {
    kiln_bench_step s;
    kiln_status st = step_init(be, model, input, batch, &s);
    kiln_timing tm;
    int ok = !st && step_run(&s) == 0; /* the first step: programs, tuning, first loss */
    if (ok) *first_loss = s.loss;
    /* One more warm-up step, then at least 5 timed steps (3 when a step takes seconds, 1
       when it takes longer than once_ms). */
    double t0 = kiln_now_ms();
    ok = ok && step_run(&s) == 0;
    double warm_ms = kiln_now_ms() - t0;
    int min_reps = warm_ms > 1000 ? 3 : 5;
    if (once_ms > 0 && warm_ms > once_ms) {
        min_reps = 1;
        min_ms = 0;
    }
    ok = ok && kiln_time_runs(step_run, &s, 0, min_reps, min_ms, 50, 0, &tm) == 0;
    kiln_bench_row *row = ok ? kiln_bench_add(r) : NULL;
    if (row) {
        const kiln_device_info *d = kiln_backend_device(be);
        snprintf(row->device, sizeof row->device, "%s",
                 d->type == KILN_DEVICE_HOST ? "host" : d->name);
        snprintf(row->driver, sizeof row->driver, "%s", d->driver_version);
        snprintf(row->backend, sizeof row->backend, "%s", backend_name);
        snprintf(row->op, sizeof row->op, "train_step");
        snprintf(row->shape, sizeof row->shape, "%s %dx%dx3 b%d", model, input, input, batch);
        row->ms = tm.ms;
        row->ms_min = tm.ms_min;
        row->ms_max = tm.ms_max;
        row->reps = tm.reps;
        row->images_per_s = 1e3 * batch / tm.ms;
        /* forward + backward (data and weights) is about three forwards */
        row->gflops = 3 * s.flops * batch / (tm.ms * 1e6);
        if (ref_loss >= 0) {
            row->err = *first_loss > ref_loss ? *first_loss - ref_loss : ref_loss - *first_loss;
            row->err /= ref_loss > 1e-12 ? ref_loss : 1;
            row->pass = row->err < 1e-3;
        }
    } else {
        fprintf(stderr, "kiln bench: training step of %s on %s: %s\n", model, backend_name,
                kiln_last_error());
    }
    kiln_bench_step_free(&s);
    return row != NULL;
}

/* ---- time to the first step in a new process ---- */

int kiln_bench_first_step(int argc, char **argv) {
    double t0 = kiln_now_ms();
    const char *model = argc > 1 ? argv[1] : "vgg16-narrow";
    int input = argc > 2 ? atoi(argv[2]) : 32, batch = argc > 3 ? atoi(argv[3]) : 64;
    kiln_backend_t be;
    kiln_bench_step s;
    if (kiln_backend_init_from_env(&be)) {
        fprintf(stderr, "first-step: %s\n", kiln_last_error());
        return 1;
    }
    kiln_status st = step_init(be, model, input, batch, &s);
    if (!st && step_run(&s)) st = KILN_INTERNAL;
    double ms = kiln_now_ms() - t0;
    kiln_backend_stats bs;
    kiln_backend_get_stats(be, &bs);
    if (st) fprintf(stderr, "first-step: %s\n", kiln_last_error());
    kiln_bench_step_free(&s);
    kiln_backend_free(be);
    if (st) return 1;
    printf("first-step ms=%.1f compiled=%d loaded=%d tune_measured=%d tune_loaded=%d driver=%d\n",
           ms, bs.programs_compiled, bs.programs_loaded, bs.tune_measured, bs.tune_loaded,
           bs.programs_driver);
    return 0;
}

typedef struct {
    double ms, wall;
    int compiled, loaded, measured, tuned, driver;
} probe_result;

static int run_probe(const char *self, const char *model, int input, int batch, probe_result *p) {
    char in[16], b[16];
    snprintf(in, sizeof in, "%d", input);
    snprintf(b, sizeof b, "%d", batch);
    char *argv[] = {(char *)self, "bench", "first-step", (char *)model, in, b, NULL};
    int pid, ok = 0;
    double t0 = kiln_now_ms();
    FILE *f = kiln_spawn_read(argv, &pid);
    char line[256];
    while (f && fgets(line, sizeof line, f))
        ok |= sscanf(line,
                     "first-step ms=%lf compiled=%d loaded=%d tune_measured=%d tune_loaded=%d "
                     "driver=%d",
                     &p->ms, &p->compiled, &p->loaded, &p->measured, &p->tuned, &p->driver) == 6;
    int rc = f ? kiln_spawn_wait(f, pid) : -1;
    p->wall = kiln_now_ms() - t0;
    return ok && rc == 0;
}

int kiln_bench_first_step_rows(kiln_bench_report *r, const char *self, const char *model, int input,
                               int batch, int device_index, const char *device) {
    char dir[] = "/tmp/kiln-first-step-XXXXXX", idx[16];
    if (!mkdtemp(dir)) return 0;
    char *saved_cache = kiln_save_env("KILN_CACHE_DIR"),
         *saved_pocl = kiln_save_env("POCL_CACHE_DIR");
    char *saved_backend = kiln_save_env("KILN_BACKEND"),
         *saved_device = kiln_save_env("KILN_DEVICE");
    snprintf(idx, sizeof idx, "%d", device_index);
    kiln_fresh_caches(dir);
    setenv("KILN_BACKEND", "auto", 1);
    setenv("KILN_DEVICE", idx, 1);
    enum { WARM_RUNS = 3 };
    probe_result cold, warm[WARM_RUNS];
    int ok = run_probe(self, model, input, batch, &cold);
    for (int i = 0; i < WARM_RUNS && ok; i++) ok = run_probe(self, model, input, batch, &warm[i]);
    kiln_restore_env("KILN_CACHE_DIR", saved_cache);
    kiln_restore_env("KILN_BACKEND", saved_backend);
    kiln_restore_env("KILN_DEVICE", saved_device);
    kiln_restore_env("POCL_CACHE_DIR", saved_pocl);
    kiln_remove_tree(dir);
    if (!ok) return 0;
    double ms[WARM_RUNS], wall[WARM_RUNS];
    int recompiled = 0, remeasured = 0;
    for (int i = 0; i < WARM_RUNS; i++) {
        ms[i] = warm[i].ms;
        wall[i] = warm[i].wall;
        recompiled += warm[i].compiled;
        remeasured += warm[i].measured;
    }
    double ms_med = kiln_median(ms, WARM_RUNS), wall_med = kiln_median(wall, WARM_RUNS);
    printf("time to the first training step of %s %dx%d b%d in a new process (auto backend):\n"
           "  cold cache: %8.1f ms in the process, %8.1f ms with process start; %d programs "
           "compiled (%d by the driver, through its own cache), %d op shapes measured\n"
           "  warm cache: %8.1f ms in the process, %8.1f ms with process start (median of %d; "
           "range %.1f-%.1f); %d programs loaded (%d from the driver's cache), %d choices "
           "loaded, %d compiled, %d measured\n",
           model, input, input, batch, cold.ms, cold.wall, cold.compiled + cold.driver, cold.driver,
           cold.measured, ms_med, wall_med, WARM_RUNS, ms[0], ms[WARM_RUNS - 1],
           warm[0].loaded + warm[0].driver, warm[0].driver, warm[0].tuned, recompiled, remeasured);
    for (int w = 0; w < 2; w++) {
        kiln_bench_row *row = kiln_bench_add(r);
        if (!row) return 0;
        snprintf(row->device, sizeof row->device, "%s", device);
        snprintf(row->backend, sizeof row->backend, "auto");
        snprintf(row->op, sizeof row->op, "first_train_step");
        snprintf(row->shape, sizeof row->shape, "%s %dx%dx3 b%d, %s cache, with process start",
                 model, input, input, batch, w ? "warm" : "cold");
        row->ms = w ? wall_med : cold.wall;
        row->ms_min = w ? wall[0] : cold.wall;
        row->ms_max = w ? wall[WARM_RUNS - 1] : cold.wall;
        row->reps = w ? WARM_RUNS : 1;
        /* a warm process must neither compile nor measure */
        if (w) {
            row->pass = !recompiled && !remeasured;
            row->err = recompiled + remeasured;
        }
    }
    return 1;
}
