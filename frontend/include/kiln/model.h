/* Model descriptions: a graph of named nodes (functional, like the Keras functional API),
   built through this API or parsed from the text format (frontend/MODEL-FORMAT.md), then
   finalized for an input size and class count: shape inference, parameter and FLOP counts,
   activation memory, and the lint that catches the silent mistakes (unused nodes, raw
   integer pixels reaching a convolution).

   Nodes are kept in definition order; every input must be defined before the node that reads
   it, so definition order is a topological order and a graph can never hold a cycle.
   Errors return a kiln_status with the detail ("file:line: node 'c1' (conv2d): ...") in
   kiln_last_error(). */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include <stdint.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_model *kiln_model_t;

#define KILN_MODEL_MAX_INPUTS 6 /* CONCAT takes at most 6 sources */
#define KILN_MODEL_MAX_NAME   64

/* ---- building ---- */
/* An empty model; `file` names it in messages (NULL: "<api>"). */
kiln_status kiln_model_init(kiln_model_t *out, const char *file);
void kiln_model_free(kiln_model_t m);

/* Adds node `name` of `type` ("conv2d", "relu"... see MODEL-FORMAT.md) reading the
   comma-separated node names in `inputs` (NULL or "" for none), with attributes
   "key=value, key=value" (NULL or "" for none; values may hold {variables}). Unknown types,
   unknown or missing attributes, malformed values and duplicate names fail here; input names
   and {variable} values are resolved by kiln_model_finalize. */
kiln_status kiln_model_add(kiln_model_t m, const char *name, const char *type, const char *inputs,
                           const char *attrs);
/* Declares a model output (the logits the loss reads). A model needs at least one. */
kiln_status kiln_model_output(kiln_model_t m, const char *name);
/* Sets variable {name} (overrides a `var` line of the text format). */
kiln_status kiln_model_set_var(kiln_model_t m, const char *name, const char *value);

/* Typed shorthands for the common layers (kiln_model_add underneath). An input size of 0
   stands for the variable ({input_h}, {input_w}, {input_c}) set at finalize. */
kiln_status kiln_model_add_input(kiln_model_t m, const char *name, int h, int w, int c,
                                 kiln_dtype dtype);
kiln_status kiln_model_add_conv2d(kiln_model_t m, const char *name, const char *input, int filters,
                                  int kernel, int stride, int same_padding);
kiln_status kiln_model_add_dense(kiln_model_t m, const char *name, const char *input, int units);
kiln_status kiln_model_add_maxpool(kiln_model_t m, const char *name, const char *input, int pool,
                                   int stride);
kiln_status kiln_model_add_dropout(kiln_model_t m, const char *name, const char *input, float rate);
/* relu, sigmoid, tanh, gelu, flatten, softmax, global_avg_pool: any one-input node without
   required attributes. */
kiln_status kiln_model_add_simple(kiln_model_t m, const char *name, const char *type,
                                  const char *input);

/* ---- loading ---- */
kiln_status kiln_model_parse_string(const char *text, const char *file, kiln_model_t *out);
kiln_status kiln_model_parse_file(const char *path, kiln_model_t *out);
/* A zoo model by name ("vgg16-narrow", with or without ".kiln"), else a file path: a model
   file, or a Keras model (a .keras archive, or the .json of model.to_json()) mapped onto kiln
   nodes with the Keras layer names (MODEL-FORMAT.md, "Keras models"). */
kiln_status kiln_model_load(const char *name_or_path, kiln_model_t *out);
/* The zoo: names without ".kiln", NULL past the end (valid until the next call on this
   thread). */
const char *kiln_model_zoo_name(int i);

/* ---- finalizing ---- */
typedef struct kiln_model_config {
    int input_h, input_w, input_c; /* 0: the model's `var` default */
    int classes;                   /* 0: the model's `var` default */
    int batch;                     /* for activation memory; 0: 1 */
} kiln_model_config;

/* Resolves variables ({input_h} {input_w} {input_c} {classes} come from cfg) and input
   names, infers shapes, counts parameters, FLOPs and memory, and lints. May be called again
   with another config. KILN_SHAPE for shape errors and sizes too large, KILN_INVALID_ARGUMENT
   for everything else. */
kiln_status kiln_model_finalize(kiln_model_t m, const kiln_model_config *cfg);

/* ---- queries (after a successful finalize, except count/name/type/line) ---- */
typedef struct kiln_model_node_info {
    const char *name;
    const char *type;
    int line; /* 0 for nodes added through the API */
    int n_inputs;
    const char *inputs[KILN_MODEL_MAX_INPUTS];
    int input_index[KILN_MODEL_MAX_INPUTS]; /* node indices, after finalize */
    int ndim;                               /* 4: N,C,H,W; 2: N,F */
    int64_t shape[4];                       /* shape[0] = the batch of the config */
    kiln_dtype dtype;
    int64_t params;    /* trainable parameters */
    int64_t flops;     /* forward FLOPs per image (a multiply-add counts 2) */
    int training_only; /* skipped (or made deterministic) at eval/predict */
    int host_only;     /* runs in the data pipeline's workers (augmentation) */
    int is_output;
    const char *init; /* "he", "glorot", "lecun" for conv2d/dense, else NULL */
} kiln_model_node_info;

int kiln_model_node_count(kiln_model_t m);
int kiln_model_find(kiln_model_t m, const char *name); /* -1 when absent */
kiln_status kiln_model_node(kiln_model_t m, int i, kiln_model_node_info *out);
/* The resolved text of attribute `key` of node i (defaults filled in), NULL if none. */
const char *kiln_model_attr(kiln_model_t m, int i, const char *key);
/* The file name given at init/parse. */
const char *kiln_model_file(kiln_model_t m);

typedef struct kiln_model_totals {
    int64_t params;
    int64_t flops;     /* forward, per image */
    int64_t act_bytes; /* every node's output for one batch, stored for backward */
    int batch;
    int input_h, input_w, input_c, classes;
} kiln_model_totals;
kiln_status kiln_model_get_totals(kiln_model_t m, kiln_model_totals *out);

/* Lint warnings of the last finalize ("file:line: node 'c1' (conv2d): ..."). */
int kiln_model_warning_count(kiln_model_t m);
const char *kiln_model_warning(kiln_model_t m, int i);

#ifdef __cplusplus
}
#endif
#endif
