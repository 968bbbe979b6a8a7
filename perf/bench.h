/* Internal: the benchmarks behind `kiln bench`. Each command returns the process exit code. */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include "kiln/backend.h"
#include "kiln/model.h"
#include "kiln/train.h"

/* `kiln bench ...`: dispatches to the commands below. */
int kiln_cmd_bench(int argc, char **argv, const char *self);
int kiln_bench_gemm(int argc, char **argv, const char *self);
/* Hidden: time to the first GEMM result in this process (run by bench gemm twice). */
int kiln_bench_cache_probe(void);
int kiln_bench_conv(int argc, char **argv, const char *self);
int kiln_bench_peak_cmd(int argc, char **argv);
/* `mpirun -np N kiln bench scale`: the training step's images/s at 1..N ranks. */
int kiln_bench_scale(int argc, char **argv);
/* `kiln bench` / `kiln bench all`: the whole suite on every device and backend. */
int kiln_bench_suite(int argc, char **argv, const char *self);
/* `kiln bench --compare OLD.json NEW.json [--threshold F]`: the regression gate. */
int kiln_bench_compare(int argc, char **argv);
/* Hidden: time to the first training step in this process (run by the suite twice). */
int kiln_bench_first_step(int argc, char **argv);

/* Measured peak fp32 GFLOP/s of an OpenCL backend's device (kernels/peak.cl). */
kiln_status kiln_bench_peak(kiln_backend_t be, double *gflops);

/* ---- the suite's results ---- */

/* One measured figure. */
typedef struct kiln_bench_row {
    char device[128], driver[64];
    char backend[24]; /* cpu, opencl, clblast, auto, torch-cpu, pil, kiln-data */
    char op[32];      /* an op name (ops.def), train_step, data_pipeline, first_train_step */
    char shape[160];
    int pass;                  /* 1: agrees with the cpu backend, 0: does not, -1: not checked */
    double err;                /* what `pass` judged (relative error) */
    double ms, ms_min, ms_max; /* median and range of `reps` timed runs, after warm-up */
    int reps;
    double gflops, of_peak; /* 0: no FLOP count (memory-bound ops, the pipeline) */
    double images_per_s;    /* training steps and the pipeline; 0 otherwise */
} kiln_bench_row;

typedef struct kiln_bench_device {
    char name[128], driver[64], platform[128];
    double peak_gflops; /* measured; 0 when the probe could not run */
} kiln_bench_device;

#define KILN_BENCH_MAX_DEVICES 16
#define KILN_BENCH_MAX_NOTES   32

typedef struct kiln_bench_report {
    kiln_bench_row *rows;
    int nrows, cap;
    kiln_bench_device devices[KILN_BENCH_MAX_DEVICES];
    int ndevices;
    char notes[KILN_BENCH_MAX_NOTES][256];
    int nnotes;
    char version[32], commit[64], date[32], host[64], mode[16];
} kiln_bench_report;

/* A zeroed row appended to r (NULL when out of memory). */
kiln_bench_row *kiln_bench_add(kiln_bench_report *r);
void kiln_bench_note(kiln_bench_report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prints one row of the terminal table (and the header before the first). */
void kiln_bench_print_row(const kiln_bench_row *row);
/* Writes the results as JSON (cJSON) / a self-contained HTML report with SVG charts; 0 on
   failure (message printed). */
int kiln_bench_write_json(const kiln_bench_report *r, const char *path);
int kiln_bench_write_html(const kiln_bench_report *r, const char *path);
void kiln_bench_report_free(kiln_bench_report *r);

/* ---- training steps (bench-train.c) ---- */

/* A model's trainer on a backend with one deterministic synthetic batch (photo-range pixels,
   labels i % classes), SGD with the trainer's defaults: for timing steps and for filling the
   auto backend's tuning cache (kiln tune). */
typedef struct kiln_bench_step {
    kiln_model_t model;
    kiln_trainer_t tr;
    uint8_t *images;
    int32_t *labels;
    int batch;
    double flops; /* forward FLOPs per image */
    double loss;  /* of the latest step */
} kiln_bench_step;
kiln_status kiln_bench_step_init(kiln_backend_t be, const char *model, const kiln_model_config *cfg,
                                 kiln_bench_step *s);
/* The same as one rank of a data-parallel job: cfg->batch is the global batch, the synthetic
   batch this rank's share of it; bucket_mb as kiln_train_options.allreduce_bucket_mb. */
kiln_status kiln_bench_step_init_dist(kiln_backend_t be, const char *model,
                                      const kiln_model_config *cfg, kiln_dist_t dist,
                                      double bucket_mb, kiln_bench_step *s);
/* One training step (forward, backward, update with learning rate lr). */
kiln_status kiln_bench_step_run(kiln_bench_step *s, double lr);
void kiln_bench_step_free(kiln_bench_step *s);

/* Times training steps of a zoo model (forward, backward, SGD update through the trainer) on
   `be`; adds a train_step row with images/s. once_ms > 0: one timed step when the warm-up
   step takes longer. ref_loss: the cpu backend's first-step loss to check against (< 0: none);
   *first_loss receives this backend's. Returns 0 on failure. */
int kiln_bench_train(kiln_bench_report *r, kiln_backend_t be, const char *backend_name,
                     const char *model, int input, int batch, double min_ms, double once_ms,
                     double ref_loss, double *first_loss);
/* Time to the first training step of `model` on the auto backend of OpenCL device
   `device_index` in a fresh process, cold then warm (program and tuning caches in a temporary
   directory); adds first_train_step rows. Returns 0 on failure. */
int kiln_bench_first_step_rows(kiln_bench_report *r, const char *self, const char *model, int input,
                               int batch, int device_index, const char *device);

#endif
