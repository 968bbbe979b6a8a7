/* `mpirun -np N kiln bench scale`: data-parallel scaling of the training step. For k = 1..N the
   first k ranks train a model on synthetic batches (the same per-rank batch at every k, as
   Horovod's benchmarks do) while the others wait; rank 0 prints images/s, the efficiency
   against k times one rank, and the gradient all-reduce's time per step, the part of it
   backward did not hide, and the overlap. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "bench.h"
#include "kiln-tool.h"
#include "kiln/kiln.h"

typedef struct scale_row {
    int ranks;
    double img_s, eff, step_ms, allreduce_ms, exposed_ms, mib;
    double alone_img_s; /* the k ranks training alone at the same time: what the host gives */
    int buckets;
} scale_row;

static void usage(FILE *f) {
    fprintf(
        f, "usage: mpirun -np N kiln bench scale [--model M] [--input HxWxC] [--batch B]\n"
           "                [--steps S] [--allreduce-bucket-mb X] [--json FILE]\n"
           "\n"
           "Images/s of the training step at 1..N ranks (B images per rank per step, default\n"
           "32; model vgg16-narrow at 28x28x1; 10 timed steps after 2 warm-up steps), the\n"
           "scaling efficiency img/s(k) / (k img/s(1)), the img/s of k ranks each training\n"
           "alone at the same time (what the host gives k processes: memory bandwidth,\n"
           "shared cores) and the data-parallel run against it, and per step: the all-reduce\n"
           "(first bucket started to the gradients back on the device), the part of it left\n"
           "after backward (exposed) and the overlap 1 - exposed / all-reduce. Ranks sharing\n"
           "a host's cores: give each its share (POCL_MAX_PTHREAD_COUNT, OPENBLAS_NUM_THREADS).\n");
}

/* k ranks of world: one timed run, data parallel or (alone) each rank training by itself at the
   same time; the row is filled on rank 0. */
static int run_k(kiln_dist_t world, kiln_backend_t be, const char *model,
                 const kiln_model_config *cfg1, int steps, double bucket_mb, int k, int alone,
                 scale_row *row) {
    kiln_dist_t sub = NULL;
    if (kiln_dist_sub(world, k, &sub)) return kiln_cli_dist_fail(world, "bench scale");
    if (sub) {
        kiln_model_config cfg = *cfg1;
        cfg.batch = cfg1->batch * (alone ? 1 : k);
        kiln_bench_step s;
        kiln_status st =
            kiln_bench_step_init_dist(be, model, &cfg, alone ? NULL : sub, bucket_mb, &s);
        kiln_trainer_dist_stats a, b;
        double t0 = 0, t1 = 0;
        for (int i = 0; i < 2 && !st; i++) st = kiln_bench_step_run(&s, 0.01);
        if (!st) st = kiln_dist_barrier(sub);
        if (!st) {
            kiln_trainer_dist_stats_get(s.tr, &a);
            t0 = kiln_now_ms();
        }
        for (int i = 0; i < steps && !st; i++) st = kiln_bench_step_run(&s, 0.01);
        if (!st) st = kiln_dist_barrier(sub);
        t1 = kiln_now_ms();
        if (!st) kiln_trainer_dist_stats_get(s.tr, &b);
        double ms = (t1 - t0) / steps, n = (double)(b.steps - a.steps);
        row->ranks = k;
        if (!st && alone) {
            row->alone_img_s = 1e3 * cfg.batch * k / ms;
        } else if (!st) {
            row->step_ms = ms;
            row->img_s = 1e3 * cfg.batch / ms;
            row->allreduce_ms = n > 0 ? 1e3 * (b.allreduce_s - a.allreduce_s) / n : 0;
            row->exposed_ms = n > 0 ? 1e3 * (b.exposed_s - a.exposed_s) / n : 0;
            row->mib = k > 1 ? b.bytes_per_step / (1 << 20) : 0;
            row->buckets = b.buckets;
        }
        kiln_bench_step_free(&s);
        kiln_dist_finalize(sub);
        if (st) return kiln_cli_dist_fail(world, "bench scale");
    }
    /* The ranks outside wait here, sleeping between polls: they leave the cores free. */
    return kiln_dist_barrier(world) ? kiln_cli_dist_fail(world, "bench scale") : 0;
}

static int write_json(const char *path, const char *model, const kiln_model_config *cfg,
                      const scale_row *rows, int n, const char *device) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "benchmark", "scale");
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddNumberToObject(root, "batch_per_rank", cfg->batch);
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ranks", rows[i].ranks);
        cJSON_AddNumberToObject(o, "images_per_s", rows[i].img_s);
        cJSON_AddNumberToObject(o, "efficiency", rows[i].eff);
        cJSON_AddNumberToObject(o, "alone_images_per_s", rows[i].alone_img_s);
        cJSON_AddNumberToObject(o, "step_ms", rows[i].step_ms);
        cJSON_AddNumberToObject(o, "allreduce_ms", rows[i].allreduce_ms);
        cJSON_AddNumberToObject(o, "exposed_ms", rows[i].exposed_ms);
        cJSON_AddNumberToObject(o, "allreduce_mib", rows[i].mib);
        cJSON_AddNumberToObject(o, "buckets", rows[i].buckets);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(root, "rows", arr);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = txt ? fopen(path, "w") : NULL;
    int ok = f && fputs(txt, f) >= 0;
    if (f && fclose(f)) ok = 0;
    free(txt);
    if (!ok) fprintf(stderr, "kiln bench scale: cannot write %s\n", path);
    return ok ? 0 : 1;
}

int kiln_bench_scale(int argc, char **argv) {
    const char *model = "vgg16-narrow", *json = NULL;
    kiln_model_config cfg = {28, 28, 1, 10, 32};
    long long steps = 10, n;
    double bucket_mb = 0;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        int ok = v != NULL;
        if (ok && !strcmp(a, "--model"))
            model = v;
        else if (ok && !strcmp(a, "--json"))
            json = v;
        else if (ok && !strcmp(a, "--input"))
            ok = !kiln_cli_parse_input(v, &cfg.input_h, &cfg.input_w, &cfg.input_c);
        else if (ok && !strcmp(a, "--batch"))
            ok = !kiln_cli_parse_int(v, 1, 1 << 16, &n) && (cfg.batch = (int)n);
        else if (ok && !strcmp(a, "--steps"))
            ok = !kiln_cli_parse_int(v, 1, 1 << 20, &steps);
        else if (ok && !strcmp(a, "--allreduce-bucket-mb"))
            ok = (bucket_mb = atof(v)) > 0;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "kiln bench scale: bad or unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    kiln_dist_t world = NULL;
    if (kiln_cli_dist_start("bench scale", &world)) return 1;
    kiln_backend_t be = NULL;
    if (kiln_log_init_from_env() || kiln_backend_init_from_env(&be)) {
        int rc = kiln_cli_dist_fail(world, "bench scale");
        kiln_dist_finalize(world);
        return rc;
    }
    int N = kiln_dist_size(world), lead = kiln_dist_rank(world) == 0;
    const kiln_device_info *d = kiln_backend_device(be);
    char device[160];
    snprintf(device, sizeof device, "%s", d && d->type != KILN_DEVICE_HOST ? d->name : "host");
    if (lead) {
        printf("bench scale: %s %dx%dx%d, %d images per rank per step, %lld timed steps, %d "
               "rank(s), backend %s on %s\n",
               model, cfg.input_h, cfg.input_w, cfg.input_c, cfg.batch, steps, N,
               kiln_backend_name(be), device);
        printf("%5s %9s %10s %9s %9s %9s %14s %12s %8s %9s %7s\n", "ranks", "img/s", "efficiency",
               "alone", "vs alone", "step ms", "all-reduce ms", "exposed ms", "overlap", "MiB/step",
               "buckets");
        fflush(stdout);
    }
    scale_row *rows = calloc((size_t)N, sizeof *rows);
    int rc = rows ? 0 : 1;
    for (int k = 1; k <= N && !rc; k++) {
        rc = run_k(world, be, model, &cfg, (int)steps, bucket_mb, k, 1, &rows[k - 1]);
        if (!rc) rc = run_k(world, be, model, &cfg, (int)steps, bucket_mb, k, 0, &rows[k - 1]);
        scale_row *r = &rows[k - 1];
        if (rc || !lead) continue;
        r->eff = rows[0].img_s > 0 ? r->img_s / (k * rows[0].img_s) : 0;
        double overlap = r->allreduce_ms > 0 ? 1 - r->exposed_ms / r->allreduce_ms : 0;
        printf("%5d %9.1f %10.3f %9.1f %9.3f %9.1f %14.1f %12.1f %8.2f %9.1f %7d\n", k, r->img_s,
               r->eff, r->alone_img_s, r->alone_img_s > 0 ? r->img_s / r->alone_img_s : 0,
               r->step_ms, r->allreduce_ms, r->exposed_ms, overlap, r->mib, r->buckets);
        fflush(stdout);
    }
    if (!rc && lead && json) rc = write_json(json, model, &cfg, rows, N, device);
    free(rows);
    kiln_backend_free(be);
    kiln_dist_finalize(world);
    return rc;
}
