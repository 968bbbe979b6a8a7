/* Internal: the model graph shared by model.c (API, zoo, queries), model-parse.c (attribute
   values and the text format) and model-lint.c (finalize: shapes, counts, lint). */
#ifndef KILN_MODEL_IMPL_H
#define KILN_MODEL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/model.h"

#define KM_MAX_ATTRS 8
#define KM_MAX_VALS  4

typedef enum {
    KM_INT,    /* 64 */
    KM_PAIR,   /* 3 or 3x5 (h x w) */
    KM_PAD,    /* valid | same | 2 | 1x2 (h x w) | 0x1x0x1 (top x bottom x left x right) */
    KM_FLOAT,  /* 0.5, 1/255, 1e-4 */
    KM_FLOATS, /* 0.5 or [0.485, 0.456, 0.406] (1 to 4 values) */
    KM_BOOL,   /* true | false */
    KM_ENUM,   /* one of `choices` */
    KM_DIMS,   /* 28x28x1 or 512: 1 to 3 sizes separated by x */
} km_kind;

typedef struct km_attr_spec {
    const char *key;
    km_kind kind;
    const char *def;     /* default value text; NULL = required; "" = optional, no default */
    double min, max;     /* every number of the value must lie in [min, max] */
    const char *choices; /* KM_ENUM: "a|b|c" */
} km_attr_spec;

enum {
    KM_F_HOST = 1 << 0,     /* runs in the data pipeline's workers, before the upload */
    KM_F_TRAIN = 1 << 1,    /* random: only while training (made deterministic at eval) */
    KM_F_PREPROC = 1 << 2,  /* rescale/normalize: fused into the on-device u8 -> f32 step */
    KM_F_VIEW = 1 << 3,     /* a view of its input: no memory, no compute */
    KM_F_WEIGHTED = 1 << 4, /* conv2d/dense: the raw-integer-input lint looks at these */
    KM_F_EVAL_SKIP = 1 << 5 /* identity at eval (dropout) */
};

/* KM_L_INPUT ... KM_L_RESIZE, in the order of layers.def and km_layers[] */
typedef enum {
#define X(id, type, min_in, max_in, flags, attrs) KM_L_##id,
#include "layers.def"
#undef X
    KM_L_COUNT
} km_layer_id;

typedef struct km_layer_spec {
    km_layer_id id;
    const char *type;
    int min_in, max_in;
    unsigned flags;
    const km_attr_spec *attrs; /* terminated by a NULL key */
} km_layer_spec;

typedef struct km_attr_val {
    char *raw;  /* as written; NULL = the default */
    char *text; /* after {variable} substitution, or the default (finalize) */
    int set;    /* a value (written or default) exists */
    int n;      /* numbers in i[] / f[] */
    int64_t i[KM_MAX_VALS];
    double f[KM_MAX_VALS];
    int e; /* enum/bool index; KM_PAD: 1 = same */
} km_attr_val;

typedef struct km_node {
    char name[KILN_MODEL_MAX_NAME];
    const km_layer_spec *spec;
    int line;
    int n_in;
    char in_name[KILN_MODEL_MAX_INPUTS][KILN_MODEL_MAX_NAME];
    int in[KILN_MODEL_MAX_INPUTS];
    km_attr_val av[KM_MAX_ATTRS];
    /* finalize results */
    int ndim;
    int64_t shape[4]; /* per image in shape[1..]; shape[0] = batch */
    kiln_dtype dtype;
    int64_t params, flops;
    int is_output;
    int n_consumers;
    int raw;       /* lint: integer-range values may reach this node's output */
    int ranged;    /* lint: the values of this node's output lie in [lo, hi] (0: unknown) */
    double lo, hi; /* lint: the interval propagated from the input through preprocessing */
} km_node;

typedef struct km_var {
    char name[KILN_MODEL_MAX_NAME];
    char *value;
    int line; /* 0: set through the API */
} km_var;

struct kiln_model {
    char *file;
    km_node *nodes;
    int n, cap;
    char (*outputs)[KILN_MODEL_MAX_NAME];
    int *output_line;
    int n_out;
    km_var *vars;
    int n_vars;
    char **warnings;
    int n_warn;
    int finalized;
    kiln_model_totals totals;
    /* A model read from another format (a Keras file) has no lines: its node and output
       "lines" index line_label ("layers[3]", line 1 = line_label[0]), which messages print in
       place of "line N". NULL for the text format and the API. */
    char **line_label;
    int n_line_label;
    int keras; /* read from a Keras model: fixes are spelled as Keras layers */
};

/* Indexed by km_layer_id; a NULL type ends it. */
extern const km_layer_spec km_layers[];
const km_layer_spec *km_find_layer(const char *type);
int km_attr_index(const km_layer_spec *s, const char *key);
/* "relu, sigmoid, ..." for messages */
void km_layer_list(char *out, size_t n);

/* 1 when the concern's own table has an entry for layer id: shape inference (model-lint.c),
   ONNX export (onnx-export.c). Lowering's is kt_layer_lowers (train-impl.h). */
int km_layer_infers(km_layer_id id);
int km_layer_exports(km_layer_id id);

/* "file:line: node 'name' (type): <fmt>" into the error message. */
kiln_status km_node_error(kiln_status st, const struct kiln_model *m, const km_node *n,
                          const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* "file:line: ", "file: label: " (a line_label) or "file: " (line 0) */
void km_where(const struct kiln_model *m, int line, char *out, size_t n);
/* "line 4", or its line_label ("layers[3]"); "" for line 0. */
void km_line_str(const struct kiln_model *m, int line, char *out, size_t n);
/* Adds a line_label and returns the line number standing for it (0 when out of memory). */
int km_add_line_label(struct kiln_model *m, const char *label);
/* A Keras model: a .keras archive (its config.json) or the JSON of model.to_json(); see
   keras.c and MODEL-FORMAT.md ("Keras models"). */
kiln_status km_load_keras(const char *path, struct kiln_model **out);
/* 1 when path names a Keras model (.keras, or a .json file), by its name. */
int km_is_keras_path(const char *path);

/* Parses `text` as a value of spec s into v (numbers, enum index). 0, or -1 with the reason
   in why. */
int km_parse_value(const km_attr_spec *s, const char *text, km_attr_val *v, char *why, size_t n);
/* Adds a node: the shared path of kiln_model_add and the text parser. */
kiln_status km_add(struct kiln_model *m, int line, const char *name, const char *type,
                   const char *inputs, const char *attrs);
kiln_status km_add_output(struct kiln_model *m, int line, const char *name);
kiln_status km_set_var(struct kiln_model *m, int line, const char *name, const char *value);
const char *km_get_var(const struct kiln_model *m, const char *name);
/* Appends a lint warning (formatted like an error). */
void km_warn(struct kiln_model *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The input-scale rule shared by the lint (on the interval propagated through the
   preprocessing) and the trainer's first-batch check (on the min/max it observed): 0 when the
   largest magnitude in [lo, hi] is near unit scale; +1 (far above) or -1 (far below, or all
   zero) otherwise, with e.g. "max |x| = 255 is far above unit scale (> 20)" in why. */
int km_scale_check(double lo, double hi, char *why, size_t n);
char *km_strdup(const char *s);
/* Edit distance <= 2 suggestion among node names; NULL when none is close. */
const char *km_closest_name(const struct kiln_model *m, const char *name);

#endif
