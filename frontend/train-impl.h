/* Internal: the trainer's state, shared by train-lower.c (model -> graphs, initialization,
   augmentation specs) and train.c (optimizer, loops, checkpoints). */
#ifndef KILN_TRAIN_IMPL_H
#define KILN_TRAIN_IMPL_H

#include "kiln/graph.h"
#include "kiln/train.h"

#define KT_NAME 96

/* One trainable parameter: the same tensor in both graphs. */
typedef struct kt_param {
    char name[KT_NAME]; /* "conv1.weight" */
    kiln_tensor *train, *eval;
    int decay;        /* weight decay applies (weights, not biases or batch-norm params) */
    const char *init; /* "he", "glorot", "lecun"; "zeros", "ones" */
    int64_t fan_in, fan_out;
    kiln_tensor velocity, m, v; /* optimizer state: views into the flat state buffers */
} kt_param;

/* A batch-norm layer: the training graph's batch statistics, the eval graph's running ones. */
typedef struct kt_bn {
    char name[KT_NAME];
    kiln_tensor *batch_stats; /* training graph: [2, C] */
    kiln_tensor *running;     /* eval graph input: [2, C] (mean, variance) */
    float momentum;
    int64_t m; /* values per channel in a batch, for the unbiased variance */
} kt_bn;

/* One lowered graph and its endpoints. */
typedef struct kt_graph {
    kiln_graph_t g;
    kiln_tensor *images, *labels; /* inputs: u8 [N,H,W,C], i32 [N] */
    kiln_tensor *loss, *top1, *top5;
    kiln_tensor *logits;   /* [N, classes]; kept readable in the eval graph (predict) */
    kiln_tensor *first_in; /* what the first conv/dense reads (input statistics) */
} kt_graph;

/* Data parallelism's state (train-dist.c); inactive (world 1) when training alone. */
typedef struct kt_dist {
    kiln_dist_t d;
    int world, rank;
    int synced;   /* parameters, state and position are rank 0's */
    int64_t n;    /* floats in the flat gradient buffer */
    float *host;  /* staging for the all-reduce, the flat buffer's layout */
    int direct;   /* host is the gradient buffer itself (a backend in host memory): no copies */
    int nbuckets; /* bucket b: elements [lo[b], hi[b]), parameters completing in backward order */
    int64_t *lo, *hi;
    int *bucket_of;         /* per parameter */
    int *size, *left;       /* per bucket: its parameters; those still to come this step */
    int *queue;             /* buckets read back, their all-reduce not yet started */
    kiln_event_t *ev, *wev; /* per bucket: the copy to the host, the copy back */
    int *order, *handle;    /* buckets in the order their all-reduce started; its handle */
    int nqueued, started, written;
    double t_first; /* this step's first all-reduce start */
    double *gather; /* [4 * world]: every rank's loss, accuracy, health, interrupt */
    kiln_trainer_dist_stats stats;
} kt_dist;

struct kiln_trainer {
    kiln_train_options o;
    kiln_model_t model;
    kiln_backend_t be;
    int batch, classes, in_h, in_w, in_c;
    kt_graph tg, eg;
    kt_param *params;
    int nparams;
    kt_bn *bns;
    int nbns;
    kiln_tensor opt_a, opt_b; /* flat optimizer state (sgd: velocity; adam: m, v) */
    kiln_tensor grad_sq;      /* [1]: sum of squared gradients of the latest step */
    kiln_tensor norms;        /* [2 * nparams]: each gradient's sum of squares, then each
                                 weight's (allocated on first use) */
    char *class_names;        /* the training data's class names, '\n'-separated, or NULL */
    char **class_list;        /* the same split, one allocation with the strings after it */
    int nclass_names;
    char *augment_train, *augment_eval;
    /* position: the next step is (epoch, step) */
    int64_t epoch, step, global_step, adam_t;
    int64_t fault_nan_step; /* KILN_FAULT_NAN_STEP: this global step's loss reads as NaN */
    double best_val_acc;
    kt_dist dist;
};

/* Data parallelism (train-dist.c). kt_dist_setup sizes the buckets (no-op alone). */
kiln_status kt_dist_setup(struct kiln_trainer *t);
void kt_dist_free(struct kiln_trainer *t);
/* Makes parameters, optimizer state, running statistics and position rank 0's (once after
   creation or a load). */
kiln_status kt_dist_sync(struct kiln_trainer *t);
/* Backward with the bucketed all-reduce: the gradient buffer holds the ranks' sum afterwards,
   and kt_dist_grad_scale (1 / ranks) makes it their mean wherever gradients are used. */
kiln_status kt_dist_backward(struct kiln_trainer *t);
float kt_dist_grad_scale(const struct kiln_trainer *t);

/* Builds and allocates both graphs, fills t->params / t->bns. */
kiln_status kt_lower(struct kiln_trainer *t);
/* 1 when lowering has an entry for layer id (a km_layer_id); the input, pipeline and
   rescale/normalize layers have none, they fold into the upload. */
int kt_layer_lowers(int id);
/* Deterministic initialization of every parameter from (seed, parameter index). */
kiln_status kt_init_params(struct kiln_trainer *t);
/* The training and eval specs from the model's pipeline nodes or a user spec. */
kiln_status kt_augment_specs(struct kiln_trainer *t);
/* The explicit padding (top, bottom, left, right) of conv2d / pooling node nd over input x for
   kernel kh x kw, stride sh x sw, dilation dh x dw: its padding attribute, "same" resolved. The
   ONNX export uses it too, so both agree on every pixel. */
struct km_node;
void kt_pads(const struct km_node *nd, const struct km_node *x, int64_t kh, int64_t kw, int64_t sh,
             int64_t sw, int64_t dh, int64_t dw, int32_t p[4]);

/* The class names of the training data (train-ckpt.c), kept for checkpoints and prediction. */
kiln_status kt_names_from_data(struct kiln_trainer *t, kiln_dataset_t ds);

/* 1 when path names Keras weights (a .keras archive or a .h5 weights file). */
int kt_is_keras_weights(const char *path);
/* Loads the weights of a Keras model (frontend/keras-weights.c) into t's parameters and
   running statistics; errors name the file, the layer and both shapes. */
kiln_status kt_load_keras_weights(struct kiln_trainer *t, const char *path);

/* Writes the self-contained HTML report (report.c) to html from the per-epoch rows of the CSV
   log, atomically. */
kiln_status kt_write_report(struct kiln_trainer *t, const char *csv, const char *html);

#endif
