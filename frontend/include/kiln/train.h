/* The trainer: lowers a finalized model (kiln/model.h) into a training graph and an eval graph
   over one backend, initializes the parameters, and runs fit / evaluate with an optimizer, a
   learning-rate schedule, validation, checkpoints and the diagnostics that catch the silent
   mistakes (input statistics of the first batch, loss stuck at chance level, NaN/Inf).

   Lowering: conv2d -> CONV2D (+ bias), dense -> GEMM (weights [units, in], PyTorch's layout) +
   BIAS_ADD, activations -> ACT, pooling -> POOL2D, lrn -> LRN, batchnorm -> BATCHNORM_STATS +
   BATCHNORM while training (running statistics updated with AXPBY, unbiased variance) and
   BATCHNORM over the running statistics at eval, dropout -> DROPOUT (identity at eval),
   add/concat/flatten/reshape, the u8 NHWC input -> one U8_TO_F32 with the model's rescale /
   normalize nodes folded into its per-channel scale and bias, and the loss SOFTMAX_XENT (label
   smoothing) with top-1/top-5 ACCURACY. Pipeline nodes (random_flip, random_crop, center_crop...)
   become the loader's augmentation spec (kiln/data.h) unless the options give one.

   The eval graph has the same parameters in the same order, so both graphs' flat parameter
   buffers have one layout: the trainer copies the training graph's flat buffer into the eval
   graph's before evaluating. Batch-norm running statistics live in the eval graph (as inputs)
   and the training step updates them there.

   Checkpoints (safetensors, kiln/checkpoint.h) hold every parameter under "<node>.weight" /
   "<node>.bias" (batch norm: "<node>.weight", "<node>.bias", "<node>.running_stats" [2, C] =
   mean, variance), the optimizer state as flat tensors "optimizer.*", and metadata: format,
   model, epoch, step, global_step, seed, optimizer, adam_t, classes, input (HxWxC), best_val_acc,
   augment (the training spec, from which the eval transform derives) and class_names (the training
   data's class names, one per line; absent in checkpoints of older versions).

   With an output directory, fit also writes log.csv (a row per epoch), report.html (rewritten
   atomically after every epoch: SVG plots of loss and accuracy, the model summary, device,
   backend, hyperparameters, timing, the final accuracy) and, with log_grad_norms,
   grad-norms.csv. */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "kiln/backend.h"
#include "kiln/data.h"
#include "kiln/dist.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_trainer *kiln_trainer_t;

typedef enum { KILN_OPTIM_SGD, KILN_OPTIM_ADAM, KILN_OPTIM_ADAMW } kiln_optim_kind;
/* constant; step: lr * gamma every step_epochs epochs; cosine: down to 0 at the last step. A
   linear warmup over warmup_steps comes first for any of them. */
typedef enum { KILN_SCHED_CONSTANT, KILN_SCHED_STEP, KILN_SCHED_COSINE } kiln_sched_kind;
typedef enum { KILN_NAN_STOP, KILN_NAN_SKIP } kiln_nan_policy;

/* Names as the CLI, the checkpoint metadata and the report spell them ("sgd", "adam",
   "adamw"; "constant", "step", "cosine"); the parsers return 0 on success, -1 otherwise. */
const char *kiln_optim_name(kiln_optim_kind k);
int kiln_optim_parse(const char *name, kiln_optim_kind *k);
const char *kiln_sched_name(kiln_sched_kind k);
int kiln_sched_parse(const char *name, kiln_sched_kind *k);

typedef enum {
    KILN_PROGRESS_STEP,      /* after every training step */
    KILN_PROGRESS_EPOCH_END, /* after the epoch's validation */
    KILN_PROGRESS_MESSAGE,   /* a diagnostic (message) */
    KILN_PROGRESS_INFO       /* an informational line (message): the gradient-norm summary */
} kiln_progress_event;

typedef struct kiln_train_progress {
    kiln_progress_event event;
    int epoch, epochs;   /* 1-based */
    int64_t step, steps; /* steps done in this epoch, steps per epoch */
    int64_t global_step; /* steps done since the start of training */
    double loss, acc;    /* running means over this epoch's steps */
    double lr;           /* of the latest step */
    double img_per_s;    /* this epoch */
    double data_wait;    /* fraction of this epoch's time spent waiting for data */
    double eta_s;        /* rest of this epoch */
    double epoch_s;      /* seconds in this epoch so far */
    int has_val;         /* EPOCH_END: validation ran */
    double val_loss, val_acc, val_top5;
    const char *message; /* MESSAGE */
} kiln_train_progress;

typedef void (*kiln_progress_fn)(void *user, const kiln_train_progress *p);

typedef struct kiln_train_options {
    int batch;                 /* 64 */
    int epochs;                /* 10 */
    int64_t max_steps;         /* 0: none; stop (with a checkpoint) after this many steps */
    kiln_optim_kind optimizer; /* sgd */
    float lr;                  /* 0: 0.01 for sgd, 0.001 for adam/adamw */
    float momentum;            /* sgd: 0.9 */
    int nesterov;              /* sgd: 0 */
    float weight_decay;        /* < 0: 5e-4 for sgd, 0 for adam, 0.01 for adamw. Applied to
                                  weights only (not to biases or batch-norm parameters) */
    float beta1, beta2, eps;   /* adam: 0.9, 0.999, 1e-8 */
    kiln_sched_kind schedule;  /* constant */
    int step_epochs;           /* step: 0 = a third of the epochs */
    float step_gamma;          /* step: 0.1 */
    int64_t warmup_steps;      /* 0 */
    float label_smoothing;     /* 0 */
    uint64_t seed;             /* parameters, dropout, shuffling and augmentation (1) */
    int workers;               /* data workers, 0 = online cores */
    const char *augment;       /* NULL: the model's pipeline nodes; "" or "none": none */
    const char *out_dir;       /* NULL: no checkpoints or log; else last/best.safetensors and
                                  log.csv, created if missing */
    int64_t chance_steps;      /* the chance-level diagnostic looks every this many steps,
                                  once the warmup is over (0: 200; < 0: never) */
    kiln_nan_policy on_nan;    /* stop (default): no update, no checkpoint, fit returns. The
                                  message names the parameter whose gradient went non-finite
                                  first (in backward order) */
    int64_t log_grad_norms;    /* every N steps (0: never): each parameter's gradient and weight
                                  L2 norm, to grad-norms.csv in out_dir (step, param, grad_norm,
                                  weight_norm, ratio) and a KILN_PROGRESS_INFO summary line */
    const char *command;       /* optional: the command line, shown in the report */
    const volatile sig_atomic_t *interrupt; /* optional: when it reads nonzero (a signal handler
                                      sets it), fit finishes the step, writes last.safetensors at
                                      the exact position and returns KILN_FIT_INTERRUPTED */
    kiln_progress_fn progress;              /* NULL: messages go to kiln_log at warn level */
    void *user;
    int64_t log_steps; /* every N steps (0: never): a row of steps.csv in out_dir (global_step,
                          epoch, step, lr, loss, acc of that step over every rank's samples) */
    /* Data parallelism (kiln/dist.h): NULL or a world of one trains alone. With N ranks, batch
       stays the global batch (each rank computes batch / N samples of every step, the
       loader's rank shard); ranks start from rank 0's parameters, optimizer state and
       position (broadcast); gradients are summed in buckets of allreduce_bucket_mb (0: 25)
       started while backward runs and averaged before the update; validation is split over
       the ranks and its metrics summed. Batch-norm statistics stay per rank (batch / N
       samples each). Only rank 0 writes checkpoints, logs, the report and progress. */
    kiln_dist_t dist;
    double allreduce_bucket_mb;
} kiln_train_options;

void kiln_train_options_init(kiln_train_options *o);

typedef enum {
    KILN_FIT_DONE,       /* every epoch ran */
    KILN_FIT_MAX_STEPS,  /* stopped at max_steps (a checkpoint holds the exact position) */
    KILN_FIT_NAN,        /* stopped on a non-finite loss or gradient; no checkpoint written */
    KILN_FIT_INTERRUPTED /* o->interrupt was set (a checkpoint holds the exact position) */
} kiln_fit_stop;

typedef struct kiln_fit_result {
    kiln_fit_stop stop;
    int epochs_done;
    int64_t global_step;
    double train_loss, train_acc; /* the last epoch's running means */
    int has_val;
    double val_loss, val_acc, val_top5, best_val_acc;
    double img_per_s; /* over all training steps */
    double seconds;
} kiln_fit_result;

typedef struct kiln_eval_result {
    int64_t samples;
    double loss, acc, top5;
    double img_per_s;
} kiln_eval_result;

/* Finalizes `m` again for o->batch (keeping its input size and classes), lowers it and
   allocates both graphs on `be`, and initializes the parameters from o->seed. The trainer
   borrows m and be; both must outlive it. */
kiln_status kiln_trainer_create(kiln_model_t m, kiln_backend_t be, const kiln_train_options *o,
                                kiln_trainer_t *out);
void kiln_trainer_free(kiln_trainer_t t);

/* Trains from the current position (0, or what kiln_trainer_load restored) to o->epochs,
   validating on `val` (NULL: none) after every epoch. Errors (data, device) return a status;
   a NaN stop returns KILN_OK with r->stop = KILN_FIT_NAN. */
kiln_status kiln_trainer_fit(kiln_trainer_t t, kiln_dataset_t train, kiln_dataset_t val,
                             kiln_fit_result *r);
/* Loss and top-1/top-5 accuracy over every sample of ds (no augmentation beyond the eval
   transform, running batch-norm statistics, no dropout). */
kiln_status kiln_trainer_evaluate(kiln_trainer_t t, kiln_dataset_t ds, kiln_eval_result *r);

/* Writes parameters, running statistics, optimizer state and position, atomically. */
kiln_status kiln_trainer_save(kiln_trainer_t t, const char *path);
/* Restores a checkpoint written by kiln_trainer_save for the same model; with
   weights_only the optimizer state and position are left alone (for eval). With weights_only,
   path may also be the Keras model the trainer's model was read from (a .keras archive, its
   model.weights.h5 read with libhdf5) or a Keras .weights.h5 file: its weights are converted to
   kiln's layouts (frontend/MODEL-FORMAT.md, "Keras models"). */
kiln_status kiln_trainer_load(kiln_trainer_t t, const char *path, int weights_only);
/* Whether kiln_trainer_load reads path as Keras weights (its name ends in .keras or .h5)
   rather than as a kiln checkpoint. */
int kiln_is_keras_weights(const char *path);

/* The augmentation spec the trainer uses for training and for evaluation (the eval transform:
   deterministic resize/center crop only), "" when none. */
const char *kiln_trainer_augment(kiln_trainer_t t, int training);
/* Peak device memory of the two graphs (parameters, gradients, optimizer state, arenas). */
size_t kiln_trainer_device_bytes(kiln_trainer_t t);
/* One training step outside fit (benchmarks, custom loops): forward, backward and the
   optimizer update with learning rate lr on a full batch of u8 [batch, H, W, C] images and
   their labels; *loss = the batch's mean loss. A non-finite loss or gradient updates nothing
   and is an error. */
kiln_status kiln_trainer_step(kiln_trainer_t t, const uint8_t *images, const int32_t *labels,
                              double lr, double *loss);

/* Where data parallelism's time went since the trainer was created (all zero alone). */
typedef struct kiln_trainer_dist_stats {
    int ranks, buckets;
    int64_t steps;
    double bytes_per_step; /* gradient bytes each rank all-reduces per step */
    double allreduce_s;    /* summed over steps: first bucket started to the last one done */
    double exposed_s;      /* summed over steps: backward done to the averaged gradients back
                              on the device (what overlap did not hide) */
} kiln_trainer_dist_stats;
void kiln_trainer_dist_stats_get(kiln_trainer_t t, kiln_trainer_dist_stats *s);

/* ---- prediction ---- */

/* The model input (height, width, channels) and class count the trainer was built for. */
void kiln_trainer_input(kiln_trainer_t t, int *height, int *width, int *channels, int *classes);
/* A class's name from the training data (set by fit, restored by kiln_trainer_load), or NULL
   when unknown (a checkpoint without names). */
const char *kiln_trainer_class_name(kiln_trainer_t t, int cls);
/* One encoded JPEG (n bytes) through the evaluation loader's path into out [height, width,
   channels] of the model's input: EXIF orientation, gray/RGB as the model reads, the eval
   augmentation spec (preceded by a stretch to the model's size when the spec fixes none), and
   the same region decode at a DCT scale and resampling. Errors describe what is wrong with the
   data (the caller names the file). */
kiln_status kiln_trainer_prepare_jpeg(kiln_trainer_t t, const uint8_t *jpg, size_t n, uint8_t *out);
/* Class probabilities (softmax of the logits) of n images already at the model's input size,
   in eval mode (no dropout, running batch-norm statistics, rescale/normalize applied):
   probs[n * classes]. */
kiln_status kiln_trainer_predict(kiln_trainer_t t, const uint8_t *images, int n, float *probs);

#ifdef __cplusplus
}
#endif
#endif
