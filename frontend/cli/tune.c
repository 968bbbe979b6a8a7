/* `kiln tune`: fills the auto backend's tuning cache ahead of time. One training step of the
   model (forward, backward, update; perf/bench-train.c's step) on a synthetic batch sends every op
   shape of training through the auto backend, which measures each implementation the first time it
   sees a shape and keeps the fastest in the cache directory (runtime/tune.c); a second run, like
   the first step of `kiln train` afterwards, loads the choices and measures nothing. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "kiln/kiln.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln tune [--model M] [--input HxW[xC]] [--batch N] [--classes N]\n"
               "  Measures, on the auto backend of KILN_DEVICE's device, every op shape of the\n"
               "  model's training step (forward and backward) and stores the fastest\n"
               "  implementation in the tuning cache (KILN_CACHE_DIR), so training starts tuned.\n"
               "  --model    a zoo name or a .kiln file (default vgg16-narrow)\n"
               "  --input    the training input size (default: the model's)\n"
               "  --batch    the training batch size (default 64, as kiln train)\n"
               "  --classes  the class count (default: the model's)\n"
               "Use the --input, --batch and --classes of the kiln train run to tune for.\n");
}

static int fail(const char *what) {
    fprintf(stderr, "kiln tune: %s: %s\n", what, kiln_last_error());
    return 1;
}

int kiln_cmd_tune(int argc, char **argv) {
    const char *model = "vgg16-narrow";
    kiln_model_config cfg = {0, 0, 0, 0, 64};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && v) {
            model = argv[++i];
        } else if (!strcmp(a, "--input") && v &&
                   !kiln_cli_parse_input(v, &cfg.input_h, &cfg.input_w, &cfg.input_c)) {
            i++;
        } else if (!strcmp(a, "--batch") && v && !kiln_cli_parse_int(v, 1, 65536, &n)) {
            cfg.batch = (int)n;
            i++;
        } else if (!strcmp(a, "--classes") && v && !kiln_cli_parse_int(v, 1, 1 << 24, &n)) {
            cfg.classes = (int)n;
            i++;
        } else {
            fprintf(stderr, "kiln tune: unknown or bad option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    kiln_backend_t be;
    if (kiln_backend_init("auto", NULL, &be)) return fail("auto backend");
    kiln_bench_step step;
    kiln_model_totals tot;
    int rc = 1;
    if (kiln_bench_step_init(be, model, &cfg, &step) || kiln_model_get_totals(step.model, &tot)) {
        fail(model);
        goto out;
    }
    const kiln_device_info *d = kiln_backend_device(be);
    printf("tuning %s, input %dx%dx%d, batch %d, %d classes, on %s (auto backend)\n", model,
           tot.input_h, tot.input_w, tot.input_c, cfg.batch, tot.classes,
           d->type == KILN_DEVICE_HOST ? "the host" : d->name);
    fflush(stdout);
    /* The auto backend reports each measurement (shape, choice, both times) at info level. */
    kiln_log_level level = kiln_log_get_level();
    if (level < KILN_LOG_INFO) kiln_log_set_level(KILN_LOG_INFO);
    kiln_status st = kiln_bench_step_run(&step, 0.0);
    kiln_log_set_level(level);
    if (st) {
        fail("training step");
        goto out;
    }
    kiln_backend_stats s;
    kiln_backend_get_stats(be, &s);
    if (!s.tune_measured && !s.tune_loaded)
        printf("nothing to tune: the auto backend on this device has a single implementation "
               "per op (it needs an OpenCL device with CLBlast, not a simulator)\n");
    else
        printf("%d op shapes measured now, %d choices already in the tuning cache%s\n",
               s.tune_measured, s.tune_loaded, s.tune_measured ? "" : ": nothing left to measure");
    rc = 0;
out:
    kiln_bench_step_free(&step);
    kiln_backend_free(be);
    return rc;
}
