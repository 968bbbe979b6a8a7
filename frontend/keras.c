/* Keras models: the config.json of a .keras archive, or the JSON of model.to_json(), mapped
   onto kiln nodes so that the lint, `kiln summary` and the trainer see the Keras graph.

   Functional models follow each layer's inbound_nodes (Keras 3's {"args": [keras tensors]}
   and Keras 2's [[name, node, tensor, kwargs]] forms); Sequential models, top-level or used
   as a layer, chain their layers; a Functional used as a layer has its inputs bound to the
   tensors it is called on. Every node keeps its Keras layer name, and messages say where the
   layer is ("layers[3]", "sequential.layers[0]"). A layer kiln cannot map is an error naming
   the file, the layer, its class and its position, never skipped.

   Keras is NHWC (channels_last) and kiln NCHW: shapes are mapped by meaning (HxWxC input,
   channels of Conv2D/BatchNormalization/Concatenate). Flatten orders its output H, W, C in
   Keras and C, H, W in kiln, which changes nothing in the graph but the row order of a Dense
   kernel read after a Flatten: whoever loads Keras weights must permute those rows (and
   transpose HWIO kernels to OIHW). Keras' padding="same" is TensorFlow's rule, which is
   kiln's `same` (pad total max((ceil(in/s)-1)*s + (k-1)*d + 1 - in, 0), the odd pixel at the
   bottom/right).

   An image InputLayer (1 to 4 channels) becomes a u8 input: kiln feeds 0-255 pixels, as
   Keras' image_dataset_from_directory does, and the lint then knows the input's range. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../runtime/backend-impl.h"
#include "model-impl.h"
#include "zip-impl.h"

#define KX_JSON_LIMIT (64u << 20) /* a model config is kilobytes; this is not one */
#define KX_MAX_DEPTH  16          /* models nested as layers */

typedef struct kx_alias {
    char keras[256];                /* a layer name in this graph */
    char node[KILN_MODEL_MAX_NAME]; /* the kiln node holding its output */
} kx_alias;

/* The layer names of one graph (a Functional's names are its own). */
typedef struct kx_scope {
    kx_alias *a;
    int n, cap;
} kx_scope;

typedef struct kx {
    struct kiln_model *m;
    const char *path;
    int depth;
} kx;

/* One layer being mapped. */
typedef struct kx_layer {
    const char *cls, *name;
    const cJSON *cfg;
    char label[192]; /* "layers[3]", "sequential.layers[0]" */
    int line;        /* the line standing for label */
    int n_in;
    char in[KILN_MODEL_MAX_INPUTS][KILN_MODEL_MAX_NAME];
    int in_rank[KILN_MODEL_MAX_INPUTS]; /* from the Keras tensor's shape; 0 unknown */
    char out[KILN_MODEL_MAX_NAME];      /* the kiln node holding the layer's output */
} kx_layer;

/* "FILE: LABEL 'name' (Class): ..." */
static kiln_status kx_err(const kx *c, const kx_layer *L, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static kiln_status kx_err(const kx *c, const kx_layer *L, const char *fmt, ...) {
    if (L)
        kiln_error(KILN_INVALID_ARGUMENT, "%s: %s '%s' (%s): ", c->path, L->label, L->name, L->cls);
    else
        kiln_error(KILN_INVALID_ARGUMENT, "%s: ", c->path);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error_append("%s", msg);
    return KILN_INVALID_ARGUMENT;
}

static const cJSON *get(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *get_str(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is_null(const cJSON *v) {
    return !v || cJSON_IsNull(v);
}

/* ---- scopes ---- */
static kiln_status alias_set(kx_scope *s, const char *keras, const char *node) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->a[i].keras, keras)) {
            snprintf(s->a[i].node, sizeof s->a[i].node, "%s", node);
            return KILN_OK;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 32;
        kx_alias *a = realloc(s->a, (size_t)cap * sizeof *a);
        if (!a) return kiln_error(KILN_OUT_OF_MEMORY, "keras: out of memory");
        s->a = a;
        s->cap = cap;
    }
    snprintf(s->a[s->n].keras, sizeof s->a[s->n].keras, "%s", keras);
    snprintf(s->a[s->n].node, sizeof s->a[s->n].node, "%s", node);
    s->n++;
    return KILN_OK;
}

static const char *alias_get(const kx_scope *s, const char *keras) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->a[i].keras, keras)) return s->a[i].node;
    return NULL;
}

/* ---- values ---- */
/* A Keras name as a kiln node name: other characters become '_', at most 63 of them. */
static void node_name(const char *keras, char *out) {
    size_t o = 0;
    if (isdigit((unsigned char)*keras)) out[o++] = '_';
    for (const char *p = keras; *p && o < KILN_MODEL_MAX_NAME - 1; p++)
        out[o++] = isalnum((unsigned char)*p) ? *p : '_';
    if (!o) out[o++] = '_';
    out[o] = '\0';
}

/* A fresh node name: base, else base_2, base_3... */
static void fresh_name(const struct kiln_model *m, const char *base, char *out) {
    char b[KILN_MODEL_MAX_NAME];
    node_name(base, b);
    snprintf(out, KILN_MODEL_MAX_NAME, "%s", b);
    for (int k = 2; kiln_model_find((kiln_model_t)m, out) >= 0; k++)
        snprintf(out, KILN_MODEL_MAX_NAME, "%.*s_%d", KILN_MODEL_MAX_NAME - 12, b, k);
}

static int num(const cJSON *v, double *out) {
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valuedouble;
    return 0;
}

static int integer(const cJSON *v, long long *out) {
    double d;
    if (num(v, &d) || d != floor(d) || fabs(d) > 1e15) return -1;
    *out = (long long)d;
    return 0;
}

/* An int or a list of two ints (kernel_size, strides...): "3x3". */
static kiln_status pair(const kx *c, const kx_layer *L, const char *key, const char *def, char *out,
                        size_t n) {
    const cJSON *v = get(L->cfg, key);
    long long a, b;
    if (is_null(v) && def) {
        snprintf(out, n, "%s", def);
        return KILN_OK;
    }
    if (!integer(v, &a)) {
        snprintf(out, n, "%lldx%lld", a, a);
        return KILN_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 && !integer(cJSON_GetArrayItem(v, 0), &a) &&
        !integer(cJSON_GetArrayItem(v, 1), &b)) {
        snprintf(out, n, "%lldx%lld", a, b);
        return KILN_OK;
    }
    return kx_err(c, L, "'%s' must be an integer or a pair of integers", key);
}

/* A float or a [lower, upper] range (Keras augmentation factors) into lo, hi; a single value
   v is [-v, v] when sym, else [v, v]. */
static int range(const cJSON *v, int sym, double *lo, double *hi) {
    double a, b;
    if (!num(v, &a)) {
        *lo = sym ? -fabs(a) : a;
        *hi = fabs(a);
        return 0;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 && !num(cJSON_GetArrayItem(v, 0), &a) &&
        !num(cJSON_GetArrayItem(v, 1), &b)) {
        *lo = a;
        *hi = b;
        return 0;
    }
    return -1;
}

/* A symmetric factor [-v, v] (or a single v) into v. */
static kiln_status sym_factor(const kx *c, const kx_layer *L, const char *key, double *v) {
    double lo, hi;
    if (range(get(L->cfg, key), 1, &lo, &hi))
        return kx_err(c, L, "'%s' must be a number or a [lower, upper] pair", key);
    if (fabs(lo + hi) > 1e-9 * (fabs(lo) + fabs(hi)) || hi < 0)
        return kx_err(c, L, "%s=[%g, %g] is not symmetric: kiln's augmentation draws from [-v, v]",
                      key, lo, hi);
    *v = hi;
    return KILN_OK;
}

/* Every number in a (nested) list into v[]; their count, or -1 past max. */
static int numbers(const cJSON *j, double *v, int max, int n) {
    if (n < 0) return n;
    if (cJSON_IsNumber(j)) {
        if (n == max) return -1;
        v[n] = j->valuedouble;
        return n + 1;
    }
    if (!cJSON_IsArray(j)) return -1;
    for (const cJSON *e = j->child; e && n >= 0; e = e->next) n = numbers(e, v, max, n);
    return n;
}

static kiln_status channels_last(const kx *c, const kx_layer *L) {
    const char *f = get_str(L->cfg, "data_format");
    if (f && strcmp(f, "channels_last"))
        return kx_err(c, L, "data_format='%s' is not mapped (kiln maps channels_last models)", f);
    return KILN_OK;
}

/* Keras' initializer names onto kiln's he|glorot|lecun (Keras' default is Glorot uniform). */
static const char *init_of(const cJSON *v) {
    const char *n = cJSON_IsString(v) ? v->valuestring : get_str(v, "class_name");
    if (!n) return "glorot";
    char low[64];
    size_t k = 0;
    for (; n[k] && k < sizeof low - 1; k++) low[k] = (char)tolower((unsigned char)n[k]);
    low[k] = '\0';
    if (!strncmp(low, "he", 2)) return "he";
    if (!strncmp(low, "lecun", 5)) return "lecun";
    return "glorot";
}

/* A Keras activation onto a kiln node type: "" for linear, NULL when kiln has none. */
static const char *act_type(const cJSON *v) {
    if (is_null(v)) return "";
    const char *n = cJSON_IsString(v) ? v->valuestring : NULL;
    if (!n && cJSON_IsString(get(v, "config"))) n = get(v, "config")->valuestring;
    if (!n) n = get_str(get(v, "config"), "name");
    if (!n) return NULL;
    static const char *const same[] = {"relu", "sigmoid",    "tanh",   "gelu",
                                       "elu",  "leaky_relu", "softmax"};
    if (!strcmp(n, "linear")) return "";
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (!strcmp(n, same[i])) return same[i];
    return NULL;
}

/* ---- adding nodes ---- */
static kiln_status add(kx *c, kx_layer *L, const char *name, const char *type, const char *attrs) {
    char inputs[KILN_MODEL_MAX_INPUTS * (KILN_MODEL_MAX_NAME + 1)] = "";
    size_t l = 0;
    for (int k = 0; k < L->n_in; k++)
        l += (size_t)snprintf(inputs + l, sizeof inputs - l, "%s%s", k ? "," : "", L->in[k]);
    kiln_status st = km_add(c->m, L->line, name, type, inputs, attrs);
    if (st) return st;
    snprintf(L->out, sizeof L->out, "%s", name);
    return KILN_OK;
}

/* The layer as one kiln node named after it. */
static kiln_status add_self(kx *c, kx_layer *L, const char *type, const char *attrs) {
    char name[KILN_MODEL_MAX_NAME];
    node_name(L->name, name);
    return add(c, L, name, type, attrs);
}

/* A Conv2D/Dense activation as its own node after the layer's ("conv2d_relu"). */
static kiln_status add_activation(kx *c, kx_layer *L, const char *act) {
    if (!*act) return KILN_OK;
    char base[KILN_MODEL_MAX_NAME * 2], name[KILN_MODEL_MAX_NAME];
    snprintf(base, sizeof base, "%s_%s", L->out, act);
    fresh_name(c->m, base, name);
    L->n_in = 1;
    snprintf(L->in[0], sizeof L->in[0], "%s", L->out);
    return add(c, L, name, act, !strcmp(act, "leaky_relu") ? "alpha=0.2" : NULL);
}

static kiln_status need_inputs(const kx *c, const kx_layer *L, int lo, int hi) {
    if (L->n_in >= lo && L->n_in <= hi) return KILN_OK;
    if (lo == hi) return kx_err(c, L, "reads %d tensors; kiln maps it reading %d", L->n_in, lo);
    return kx_err(c, L, "reads %d tensors; kiln maps %d to %d", L->n_in, lo, hi);
}

static kiln_status map_sequential(kx *c, const cJSON *cfg, const char *name, const char *bound,
                                  char *out);
static kiln_status map_functional(kx *c, const cJSON *cfg, const char *name, int n_bound,
                                  char bound[][KILN_MODEL_MAX_NAME],
                                  char out[][KILN_MODEL_MAX_NAME], int *n_out);

/* ---- InputLayer ---- */
static kiln_status map_input(kx *c, kx_layer *L) {
    const cJSON *shape = get(L->cfg, "batch_shape");
    if (is_null(shape)) shape = get(L->cfg, "batch_input_shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 4)
        return kx_err(c, L,
                      "shape %s is not (batch, height, width, channels): kiln models read images",
                      cJSON_IsArray(shape) ? "of another rank" : "missing");
    long long d[3];
    const char *var[3] = {"{input_h}", "{input_w}", NULL};
    char dim[3][24];
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetArrayItem(shape, k + 1);
        if (is_null(v) && var[k]) {
            snprintf(dim[k], sizeof dim[k], "%s", var[k]);
            d[k] = 0;
        } else if (integer(v, &d[k]) || d[k] <= 0) {
            return kx_err(c, L, "the %s of its shape must be a positive integer%s",
                          k == 0   ? "height"
                          : k == 1 ? "width"
                                   : "channel count",
                          k == 2 ? "" : " or None");
        } else {
            snprintf(dim[k], sizeof dim[k], "%lld", d[k]);
        }
    }
    const char *dt = get_str(L->cfg, "dtype");
    if (!dt) dt = get_str(get(get(L->cfg, "dtype"), "config"), "name");
    if (dt && strcmp(dt, "float32") && strcmp(dt, "uint8"))
        return kx_err(c, L, "dtype %s is not mapped (kiln reads float32 or uint8 images)", dt);
    char a[128];
    snprintf(a, sizeof a, "shape=%sx%sx%s, dtype=%s", dim[0], dim[1], dim[2],
             d[2] <= 4 ? "u8" : "f32");
    return add_self(c, L, "input", a);
}

/* ---- one layer ---- */
static kiln_status map_conv(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    if (!st) st = channels_last(c, L);
    long long filters = 0, groups = 1;
    if (!st && (integer(get(L->cfg, "filters"), &filters) || filters <= 0))
        st = kx_err(c, L, "'filters' must be a positive integer");
    if (!st && !is_null(get(L->cfg, "groups")) && integer(get(L->cfg, "groups"), &groups))
        st = kx_err(c, L, "'groups' must be an integer");
    const char *pad = get_str(L->cfg, "padding");
    if (!st && (!pad || (strcmp(pad, "valid") && strcmp(pad, "same"))))
        st = kx_err(c, L, "padding='%s' is not mapped (valid or same)", pad ? pad : "?");
    const char *act = act_type(get(L->cfg, "activation"));
    if (!st && !act)
        st = kx_err(c, L, "activation %s has no kiln node",
                    get_str(L->cfg, "activation") ? get_str(L->cfg, "activation") : "(custom)");
    char k[32], s[32], d[32];
    if (!st) st = pair(c, L, "kernel_size", NULL, k, sizeof k);
    if (!st) st = pair(c, L, "strides", "1", s, sizeof s);
    if (!st) st = pair(c, L, "dilation_rate", "1", d, sizeof d);
    if (st) return st;
    const cJSON *ub = get(L->cfg, "use_bias");
    char a[256];
    snprintf(a, sizeof a,
             "filters=%lld, kernel=%s, stride=%s, padding=%s, dilation=%s, groups=%lld, bias=%s, "
             "init=%s",
             filters, k, s, pad, d, groups, cJSON_IsFalse(ub) ? "false" : "true",
             init_of(get(L->cfg, "kernel_initializer")));
    if ((st = add_self(c, L, "conv2d", a))) return st;
    return add_activation(c, L, act);
}

static kiln_status map_dense(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    long long units = 0;
    if (!st && (integer(get(L->cfg, "units"), &units) || units <= 0))
        st = kx_err(c, L, "'units' must be a positive integer");
    if (!st && L->in_rank[0] > 2)
        st = kx_err(c, L,
                    "reads a %d-D tensor: Keras applies it to the last axis of every position, "
                    "kiln's dense reads (batch, features): add a Flatten or "
                    "GlobalAveragePooling2D before it",
                    L->in_rank[0]);
    const char *act = act_type(get(L->cfg, "activation"));
    if (!st && !act)
        st = kx_err(c, L, "activation %s has no kiln node",
                    get_str(L->cfg, "activation") ? get_str(L->cfg, "activation") : "(custom)");
    if (st) return st;
    char a[128];
    snprintf(a, sizeof a, "units=%lld, bias=%s, init=%s", units,
             cJSON_IsFalse(get(L->cfg, "use_bias")) ? "false" : "true",
             init_of(get(L->cfg, "kernel_initializer")));
    if ((st = add_self(c, L, "dense", a))) return st;
    return add_activation(c, L, act);
}

static kiln_status map_pool(kx *c, kx_layer *L, int avg) {
    kiln_status st = need_inputs(c, L, 1, 1);
    if (!st) st = channels_last(c, L);
    const char *pad = get_str(L->cfg, "padding");
    if (!pad) pad = "valid";
    if (!st && strcmp(pad, "valid") && strcmp(pad, "same"))
        st = kx_err(c, L, "padding='%s' is not mapped (valid or same)", pad);
    char p[32], s[32];
    if (!st) st = pair(c, L, "pool_size", "2", p, sizeof p);
    if (!st) st = pair(c, L, "strides", p, s, sizeof s);
    if (st) return st;
    /* Keras' "same" pooling leaves the padding out of a window (max over the real pixels,
       the average divided by their count). */
    char a[160];
    snprintf(a, sizeof a, "pool=%s, stride=%s, padding=%s%s", p, s, pad,
             avg ? ", count_include_pad=false" : "");
    return add_self(c, L, avg ? "avgpool" : "maxpool", a);
}

static kiln_status map_batchnorm(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    const cJSON *ax = get(L->cfg, "axis");
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) == 1) ax = cJSON_GetArrayItem(ax, 0);
    long long axis = -1;
    if (!st && !is_null(ax) && integer(ax, &axis)) st = kx_err(c, L, "'axis' must be an integer");
    int rank = L->in_rank[0];
    if (!st && axis != -1 && !(rank == 4 && axis == 3) && !(rank == 2 && axis == 1))
        st = kx_err(c, L, "axis=%lld is not the channel axis (kiln normalizes channels)", axis);
    if (!st && (cJSON_IsFalse(get(L->cfg, "center")) || cJSON_IsFalse(get(L->cfg, "scale"))))
        st = kx_err(c, L,
                    "center=False or scale=False is not mapped: kiln's batchnorm always "
                    "learns gamma and beta");
    double eps = 1e-3, mom = 0.99;
    num(get(L->cfg, "epsilon"), &eps);
    num(get(L->cfg, "momentum"), &mom);
    if (st) return st;
    /* Keras keeps momentum of the running value, kiln (PyTorch's convention) takes momentum of
       the batch value. */
    char a[96];
    snprintf(a, sizeof a, "eps=%.9g, momentum=%.9g", eps, 1 - mom);
    return add_self(c, L, "batchnorm", a);
}

static kiln_status map_activation_layer(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    if (st) return st;
    const char *cls = L->cls;
    if (!strcmp(cls, "Activation")) {
        const char *t = act_type(get(L->cfg, "activation"));
        if (!t)
            return kx_err(c, L, "activation %s has no kiln node",
                          get_str(L->cfg, "activation") ? get_str(L->cfg, "activation")
                                                        : "(custom)");
        if (!*t) { /* linear: the layer is its input */
            snprintf(L->out, sizeof L->out, "%s", L->in[0]);
            return KILN_OK;
        }
        return add_self(c, L, t, !strcmp(t, "leaky_relu") ? "alpha=0.2" : NULL);
    }
    if (!strcmp(cls, "Softmax")) {
        long long axis = -1;
        if (!is_null(get(L->cfg, "axis")) &&
            (integer(get(L->cfg, "axis"), &axis) || (axis != -1 && axis != 1)))
            return kx_err(c, L, "softmax over an axis other than the last is not mapped");
        return add_self(c, L, "softmax", NULL);
    }
    double slope = 0, thr = 0, alpha;
    char a[64];
    if (!strcmp(cls, "ReLU")) {
        if (!is_null(get(L->cfg, "max_value")))
            return kx_err(c, L, "max_value (a capped ReLU such as ReLU6) has no kiln node");
        num(get(L->cfg, "negative_slope"), &slope);
        num(get(L->cfg, "threshold"), &thr);
        if (thr != 0) return kx_err(c, L, "threshold=%g has no kiln node", thr);
        if (slope == 0) return add_self(c, L, "relu", NULL);
        snprintf(a, sizeof a, "alpha=%.9g", slope);
        return add_self(c, L, "leaky_relu", a);
    }
    if (!strcmp(cls, "LeakyReLU")) {
        alpha = 0.3; /* Keras' default; Keras 2 calls it alpha */
        if (num(get(L->cfg, "negative_slope"), &alpha)) num(get(L->cfg, "alpha"), &alpha);
        snprintf(a, sizeof a, "alpha=%.9g", alpha);
        return add_self(c, L, "leaky_relu", a);
    }
    alpha = 1; /* ELU */
    num(get(L->cfg, "alpha"), &alpha);
    snprintf(a, sizeof a, "alpha=%.9g", alpha);
    return add_self(c, L, "elu", a);
}

static kiln_status map_rescaling(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    double scale, offset = 0, v[4];
    const cJSON *s = get(L->cfg, "scale");
    int n = numbers(s, v, 4, 0);
    if (!st && n < 1) st = kx_err(c, L, "'scale' must be a number");
    for (int k = 1; !st && k < n; k++)
        if (v[k] != v[0]) st = kx_err(c, L, "a per-channel scale is not mapped");
    if (st) return st;
    scale = v[0];
    n = numbers(get(L->cfg, "offset"), v, 4, 0);
    if (n >= 1) offset = v[0];
    for (int k = 1; k < n; k++)
        if (v[k] != v[0]) return kx_err(c, L, "a per-channel offset is not mapped");
    char a[96];
    snprintf(a, sizeof a, "scale=%.9g, offset=%.9g", scale, offset);
    return add_self(c, L, "rescale", a);
}

static kiln_status map_normalization(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    if (st) return st;
    if (cJSON_IsTrue(get(L->cfg, "invert"))) return kx_err(c, L, "invert=True is not mapped");
    const cJSON *ax = get(L->cfg, "axis");
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) == 1) ax = cJSON_GetArrayItem(ax, 0);
    long long axis = -1;
    if (!is_null(ax) && (integer(ax, &axis) || (axis != -1 && axis != 3)))
        return kx_err(c, L, "axis other than the channels is not mapped");
    double mean[KM_MAX_VALS], var[KM_MAX_VALS];
    const cJSON *mj = get(L->cfg, "mean"), *vj = get(L->cfg, "variance");
    if (is_null(mj) || is_null(vj))
        return kx_err(c, L,
                      "its mean and variance were adapted (they are in model.weights.h5, not the "
                      "config): kiln does not read Keras weights yet; give them to "
                      "Normalization(mean=..., variance=...) to map it");
    int nm = numbers(mj, mean, KM_MAX_VALS, 0), nv = numbers(vj, var, KM_MAX_VALS, 0);
    if (nm < 1 || nv < 1)
        return kx_err(c, L, "mean and variance must be 1 to %d numbers", KM_MAX_VALS);
    char ms[256] = "[", ss[256] = "[";
    size_t lm = 1, ls = 1;
    for (int k = 0; k < nm; k++)
        lm += (size_t)snprintf(ms + lm, sizeof ms - lm, "%s%.9g", k ? ", " : "", mean[k]);
    for (int k = 0; k < nv; k++) {
        if (var[k] < 0) return kx_err(c, L, "variance %g is negative", var[k]);
        /* Keras divides by max(sqrt(variance), epsilon), epsilon = 1e-7. */
        double sd = sqrt(var[k]) > 1e-7 ? sqrt(var[k]) : 1e-7;
        ls += (size_t)snprintf(ss + ls, sizeof ss - ls, "%s%.9g", k ? ", " : "", sd);
    }
    snprintf(ms + lm, sizeof ms - lm, "]");
    snprintf(ss + ls, sizeof ss - ls, "]");
    char a[600];
    snprintf(a, sizeof a, "mean=%s, std=%s", ms, ss);
    return add_self(c, L, "normalize", a);
}

static kiln_status map_merge(kx *c, kx_layer *L, int cat) {
    kiln_status st = need_inputs(c, L, 2, KILN_MODEL_MAX_INPUTS);
    if (st || !cat) return st ? st : add_self(c, L, "add", NULL);
    long long axis = -1;
    if (!is_null(get(L->cfg, "axis")) && integer(get(L->cfg, "axis"), &axis))
        return kx_err(c, L, "'axis' must be an integer");
    int rank = L->in_rank[0];
    /* The channels: the last axis of a channels_last map or of a feature vector. */
    int ok = axis == -1 || (axis == 3 && rank != 2) || (axis == 1 && rank == 2);
    if (!ok)
        return kx_err(c, L, "axis=%lld: kiln concatenates along the channels (axis=-1) only", axis);
    return add_self(c, L, "concat", NULL);
}

static kiln_status size_attr(kx *c, kx_layer *L, char *a, size_t n) {
    long long h, w;
    if (integer(get(L->cfg, "height"), &h) || integer(get(L->cfg, "width"), &w) || h <= 0 || w <= 0)
        return kx_err(c, L, "'height' and 'width' must be positive integers");
    snprintf(a, n, "size=%lldx%lld", h, w);
    return KILN_OK;
}

static kiln_status map_augmentation(kx *c, kx_layer *L) {
    kiln_status st = need_inputs(c, L, 1, 1);
    if (!st) st = channels_last(c, L);
    if (st) return st;
    const char *cls = L->cls;
    char a[256];
    double v, w;
    if (!strcmp(cls, "RandomFlip")) {
        const char *mode = get_str(L->cfg, "mode");
        if (!mode) mode = "horizontal_and_vertical"; /* Keras' default */
        const char *k = !strcmp(mode, "horizontal")                ? "horizontal"
                        : !strcmp(mode, "vertical")                ? "vertical"
                        : !strcmp(mode, "horizontal_and_vertical") ? "both"
                                                                   : NULL;
        if (!k) return kx_err(c, L, "mode='%s' is not mapped", mode);
        snprintf(a, sizeof a, "mode=%s", k);
        return add_self(c, L, "random_flip", a);
    }
    if (!strcmp(cls, "RandomCrop")) {
        if ((st = size_attr(c, L, a, sizeof a))) return st;
        return add_self(c, L, "random_crop", a);
    }
    if (!strcmp(cls, "Resizing") || !strcmp(cls, "CenterCrop")) {
        if (cJSON_IsTrue(get(L->cfg, "crop_to_aspect_ratio")) ||
            cJSON_IsTrue(get(L->cfg, "pad_to_aspect_ratio")))
            return kx_err(c, L, "crop_to_aspect_ratio/pad_to_aspect_ratio is not mapped");
        if ((st = size_attr(c, L, a, sizeof a))) return st;
        return add_self(c, L, cls[0] == 'R' ? "resize" : "center_crop", a);
    }
    if (!strcmp(cls, "RandomRotation")) {
        if ((st = sym_factor(c, L, "factor", &v))) return st;
        if (v > 0.5)
            return kx_err(c, L,
                          "factor=%g (a fraction of a full turn) is over 0.5: kiln rotates "
                          "by at most 180 degrees",
                          v);
        snprintf(a, sizeof a, "degrees=%.9g", v * 360);
        return add_self(c, L, "random_rotation", a);
    }
    if (!strcmp(cls, "RandomTranslation")) {
        if ((st = sym_factor(c, L, "height_factor", &v)) ||
            (st = sym_factor(c, L, "width_factor", &w)))
            return st;
        if (v != w || v > 1)
            return kx_err(c, L,
                          "height_factor %g and width_factor %g: kiln translates both axes by "
                          "one fraction in [0, 1]",
                          v, w);
        snprintf(a, sizeof a, "fraction=%.9g", v);
        return add_self(c, L, "random_translation", a);
    }
    if (!strcmp(cls, "RandomContrast") || !strcmp(cls, "RandomBrightness")) {
        /* kiln draws one factor in [1 - v, 1 + v]; Keras' bounds need not be symmetric
           (RandomContrast(0.2) is stored as [0, 0.2]): v is the larger one. */
        int bright = cls[6] == 'B';
        double lo, hi;
        if (range(get(L->cfg, "factor"), 1, &lo, &hi))
            return kx_err(c, L, "'factor' must be a number or a [lower, upper] pair");
        v = fmax(fabs(lo), fabs(hi));
        if (v > 1) return kx_err(c, L, "factor %g is over 1", v);
        snprintf(a, sizeof a, "%s=%.9g", bright ? "delta" : "factor", v);
        return add_self(c, L, bright ? "random_brightness" : "random_contrast", a);
    }
    /* RandomZoom */
    double lo, hi, wlo, whi;
    if (range(get(L->cfg, "height_factor"), 1, &lo, &hi))
        return kx_err(c, L, "'height_factor' must be a number or a [lower, upper] pair");
    size_t l = (size_t)snprintf(a, sizeof a, "height=[%.9g, %.9g]", lo, hi);
    const cJSON *wf = get(L->cfg, "width_factor");
    if (!is_null(wf)) {
        if (range(wf, 1, &wlo, &whi))
            return kx_err(c, L, "'width_factor' must be a number or a [lower, upper] pair");
        snprintf(a + l, sizeof a - l, ", width=[%.9g, %.9g]", wlo, whi);
    }
    return add_self(c, L, "random_zoom", a);
}

static kiln_status map_maxpool(kx *c, kx_layer *L) {
    return map_pool(c, L, 0);
}

static kiln_status map_avgpool(kx *c, kx_layer *L) {
    return map_pool(c, L, 1);
}

static kiln_status map_global_avg_pool(kx *c, kx_layer *L) {
    kiln_status st;
    if ((st = need_inputs(c, L, 1, 1)) || (st = channels_last(c, L))) return st;
    if (cJSON_IsTrue(get(L->cfg, "keepdims")))
        return kx_err(c, L,
                      "keepdims=True is not mapped (kiln's global_avg_pool gives "
                      "(batch, channels))");
    return add_self(c, L, "global_avg_pool", NULL);
}

static kiln_status map_flatten(kx *c, kx_layer *L) {
    kiln_status st;
    if ((st = need_inputs(c, L, 1, 1)) || (st = channels_last(c, L))) return st;
    return add_self(c, L, "flatten", NULL);
}

static kiln_status map_dropout(kx *c, kx_layer *L) {
    kiln_status st;
    double rate = 0.5;
    if ((st = need_inputs(c, L, 1, 1))) return st;
    if (num(get(L->cfg, "rate"), &rate) || rate < 0 || rate >= 1)
        return kx_err(c, L, "'rate' must be a number in [0, 1)");
    if (!is_null(get(L->cfg, "noise_shape")))
        return kx_err(c, L, "noise_shape is not mapped (kiln drops single values)");
    char a[48];
    snprintf(a, sizeof a, "rate=%.9g", rate > 0.999 ? 0.999 : rate);
    return add_self(c, L, "dropout", a);
}

static kiln_status map_add(kx *c, kx_layer *L) {
    return map_merge(c, L, 0);
}

static kiln_status map_concat(kx *c, kx_layer *L) {
    return map_merge(c, L, 1);
}

static kiln_status map_nested_sequential(kx *c, kx_layer *L) {
    kiln_status st;
    if ((st = need_inputs(c, L, 1, 1))) return st;
    return map_sequential(c, L->cfg, L->name, L->in[0], L->out);
}

static kiln_status map_nested_functional(kx *c, kx_layer *L) {
    kiln_status st;
    char outs[KILN_MODEL_MAX_INPUTS][KILN_MODEL_MAX_NAME];
    int n_out = 0;
    if ((st = map_functional(c, L->cfg, L->name, L->n_in, L->in, outs, &n_out))) return st;
    if (n_out != 1) return kx_err(c, L, "a nested model with %d outputs is not mapped", n_out);
    snprintf(L->out, sizeof L->out, "%s", outs[0]);
    return KILN_OK;
}

/* Every Keras class kiln maps, in the order the refusal lists them; an alias is not listed.
   InputLayer is mapped where a model's inputs are read, never as a layer. */
static const struct {
    const char *cls;
    kiln_status (*map)(kx *c, kx_layer *L);
    int alias;
} kx_mappers[] = {{"InputLayer", NULL, 0},
                  {"Conv2D", map_conv, 0},
                  {"Convolution2D", map_conv, 1},
                  {"Dense", map_dense, 0},
                  {"MaxPooling2D", map_maxpool, 0},
                  {"MaxPool2D", map_maxpool, 1},
                  {"AveragePooling2D", map_avgpool, 0},
                  {"AvgPool2D", map_avgpool, 1},
                  {"GlobalAveragePooling2D", map_global_avg_pool, 0},
                  {"GlobalAvgPool2D", map_global_avg_pool, 1},
                  {"Flatten", map_flatten, 0},
                  {"Dropout", map_dropout, 0},
                  {"BatchNormalization", map_batchnorm, 0},
                  {"Activation", map_activation_layer, 0},
                  {"ReLU", map_activation_layer, 0},
                  {"LeakyReLU", map_activation_layer, 0},
                  {"ELU", map_activation_layer, 0},
                  {"Softmax", map_activation_layer, 0},
                  {"Rescaling", map_rescaling, 0},
                  {"Normalization", map_normalization, 0},
                  {"Add", map_add, 0},
                  {"Concatenate", map_concat, 0},
                  {"RandomFlip", map_augmentation, 0},
                  {"RandomCrop", map_augmentation, 0},
                  {"RandomRotation", map_augmentation, 0},
                  {"RandomTranslation", map_augmentation, 0},
                  {"RandomContrast", map_augmentation, 0},
                  {"RandomBrightness", map_augmentation, 0},
                  {"RandomZoom", map_augmentation, 0},
                  {"Resizing", map_augmentation, 0},
                  {"CenterCrop", map_augmentation, 0},
                  {"Sequential", map_nested_sequential, 0},
                  {"Functional", map_nested_functional, 0},
                  {"Model", map_nested_functional, 1}};

static kiln_status map_layer(kx *c, kx_layer *L) {
    size_t n = sizeof kx_mappers / sizeof kx_mappers[0];
    for (size_t k = 0; k < n; k++)
        if (kx_mappers[k].map && !strcmp(L->cls, kx_mappers[k].cls)) return kx_mappers[k].map(c, L);
    char list[1024];
    size_t len = 0;
    list[0] = '\0';
    for (size_t k = 0; k < n && len < sizeof list; k++)
        if (!kx_mappers[k].alias)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "",
                                    kx_mappers[k].cls);
    return kx_err(c, L, "kiln cannot map this layer class (it maps %s)", list);
}

/* ---- graphs ---- */
static kiln_status layer_init(kx *c, kx_layer *L, const cJSON *j, const char *label) {
    memset(L, 0, sizeof *L);
    L->cls = get_str(j, "class_name");
    L->cfg = get(j, "config");
    L->name = get_str(j, "name");
    if (!L->name) L->name = get_str(L->cfg, "name");
    snprintf(L->label, sizeof L->label, "%s", label);
    if (!L->cls || !cJSON_IsObject(L->cfg) || !L->name) {
        L->cls = L->cls ? L->cls : "?";
        L->name = L->name ? L->name : "?";
        return kx_err(c, L, "a layer entry needs class_name, config and name");
    }
    if (!(L->line = km_add_line_label(c->m, label)))
        return kiln_error(KILN_OUT_OF_MEMORY, "keras: out of memory");
    return KILN_OK;
}

/* A Sequential's layers in a chain from `bound` (NULL: its own InputLayer or build shape). */
static kiln_status map_sequential(kx *c, const cJSON *cfg, const char *name, const char *bound,
                                  char *out) {
    const cJSON *layers = get(cfg, "layers");
    if (!cJSON_IsArray(layers))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: Sequential '%s' has no layer list", c->path,
                          name);
    if (++c->depth > KX_MAX_DEPTH)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: models nested deeper than %d", c->path,
                          KX_MAX_DEPTH);
    char prev[KILN_MODEL_MAX_NAME] = "";
    if (bound) snprintf(prev, sizeof prev, "%s", bound);
    kiln_status st = KILN_OK;
    int idx = 0; /* the index in model.layers, which leaves the InputLayer out */
    for (const cJSON *j = layers->child; j && !st; j = j->next) {
        const char *cls = get_str(j, "class_name");
        int is_input = cls && !strcmp(cls, "InputLayer");
        char label[192];
        if (is_input)
            snprintf(label, sizeof label, "%s%sinput", bound ? name : "", bound ? "." : "");
        else if (bound)
            snprintf(label, sizeof label, "%s.layers[%d]", name, idx);
        else
            snprintf(label, sizeof label, "layers[%d]", idx);
        kx_layer L;
        if ((st = layer_init(c, &L, j, label))) break;
        if (is_input) {
            if (!*prev) st = map_input(c, &L);
            if (!st && !bound) snprintf(prev, sizeof prev, "%s", L.out);
            continue;
        }
        if (!*prev) {
            /* No InputLayer: the shape the model was built with. */
            const cJSON *bs = get(cfg, "build_input_shape");
            if (is_null(bs)) bs = get(L.cfg, "batch_input_shape");
            if (is_null(bs)) bs = get(get(j, "build_config"), "input_shape");
            if (is_null(bs)) {
                st = kiln_error(KILN_INVALID_ARGUMENT,
                                "%s: Sequential '%s' has no input shape (no InputLayer, never "
                                "built): build it or start it with keras.Input(shape=...)",
                                c->path, name);
                break;
            }
            cJSON *ic = cJSON_CreateObject();
            cJSON *ij = cJSON_CreateObject();
            if (!ic || !ij || !cJSON_AddItemToObject(ic, "batch_shape", cJSON_Duplicate(bs, 1)) ||
                !cJSON_AddStringToObject(ij, "class_name", "InputLayer") ||
                !cJSON_AddStringToObject(ij, "name", "input_layer")) {
                cJSON_Delete(ic);
                cJSON_Delete(ij);
                st = kiln_error(KILN_OUT_OF_MEMORY, "keras: out of memory");
                break;
            }
            cJSON_AddItemToObject(ij, "config", ic);
            kx_layer I;
            st = layer_init(c, &I, ij, "input");
            if (!st) st = map_input(c, &I);
            if (!st) snprintf(prev, sizeof prev, "%s", I.out);
            cJSON_Delete(ij);
            if (st) break;
        }
        L.n_in = 1;
        snprintf(L.in[0], sizeof L.in[0], "%s", prev);
        if (!(st = map_layer(c, &L))) snprintf(prev, sizeof prev, "%s", L.out);
        idx++;
    }
    c->depth--;
    if (!st && !*prev)
        st = kiln_error(KILN_INVALID_ARGUMENT, "%s: Sequential '%s' has no layers", c->path, name);
    if (!st) snprintf(out, KILN_MODEL_MAX_NAME, "%s", prev);
    return st;
}

/* The Keras tensors of a node's arguments, in order: keras_history [layer, node, tensor] and
   the tensor's rank when its shape is given. */
typedef struct kx_ref {
    const char *layer;
    long long node, tensor;
    int rank;
} kx_ref;

static void collect_refs(const cJSON *j, kx_ref *r, int *n, int max, int *over) {
    if (cJSON_IsObject(j)) {
        const char *cn = get_str(j, "class_name");
        if (cn && !strcmp(cn, "__keras_tensor__")) {
            const cJSON *kc = get(j, "config"), *h = get(kc, "keras_history");
            if (*n == max) {
                *over = 1;
                return;
            }
            kx_ref *x = &r[(*n)++];
            memset(x, 0, sizeof *x);
            x->node = x->tensor = -1;
            if (cJSON_IsArray(h) && cJSON_GetArraySize(h) == 3 &&
                cJSON_IsString(cJSON_GetArrayItem(h, 0))) {
                x->layer = cJSON_GetArrayItem(h, 0)->valuestring;
                integer(cJSON_GetArrayItem(h, 1), &x->node);
                integer(cJSON_GetArrayItem(h, 2), &x->tensor);
            }
            const cJSON *sh = get(kc, "shape");
            if (cJSON_IsArray(sh)) x->rank = cJSON_GetArraySize(sh);
            return;
        }
    }
    if (cJSON_IsObject(j) || cJSON_IsArray(j))
        for (const cJSON *e = j->child; e; e = e->next) collect_refs(e, r, n, max, over);
}

/* The tensors a functional layer reads (its one call). */
static kiln_status layer_refs(kx *c, kx_layer *L, const cJSON *j, kx_ref *r, int *n) {
    const cJSON *nodes = get(j, "inbound_nodes");
    int count = cJSON_IsArray(nodes) ? cJSON_GetArraySize(nodes) : 0;
    *n = 0;
    if (count == 0) return kx_err(c, L, "has no inbound node: nothing calls it");
    if (count > 1)
        return kx_err(c, L,
                      "is called %d times (one layer, shared weights): kiln cannot share a "
                      "layer's weights between nodes",
                      count);
    const cJSON *nd = cJSON_GetArrayItem(nodes, 0);
    int over = 0;
    if (cJSON_IsObject(nd)) { /* Keras 3: {"args": [...], "kwargs": {...}} */
        collect_refs(get(nd, "args"), r, n, KILN_MODEL_MAX_INPUTS, &over);
        int nk = 0;
        kx_ref kr[1];
        collect_refs(get(nd, "kwargs"), kr, &nk, 1, &over);
        if (nk) return kx_err(c, L, "a tensor passed by keyword is not mapped");
    } else if (cJSON_IsArray(nd)) { /* Keras 2: [[layer, node, tensor, kwargs], ...] */
        for (const cJSON *e = nd->child; e; e = e->next) {
            if (*n == KILN_MODEL_MAX_INPUTS) {
                over = 1;
                break;
            }
            kx_ref *x = &r[(*n)++];
            memset(x, 0, sizeof *x);
            x->node = x->tensor = -1;
            if (cJSON_IsArray(e) && cJSON_IsString(cJSON_GetArrayItem(e, 0))) {
                x->layer = cJSON_GetArrayItem(e, 0)->valuestring;
                integer(cJSON_GetArrayItem(e, 1), &x->node);
                integer(cJSON_GetArrayItem(e, 2), &x->tensor);
            }
        }
    }
    if (over) return kx_err(c, L, "reads more than %d tensors", KILN_MODEL_MAX_INPUTS);
    for (int k = 0; k < *n; k++) {
        if (!r[k].layer) return kx_err(c, L, "an input tensor without keras_history");
        if (r[k].node != 0 || r[k].tensor != 0)
            return kx_err(c, L,
                          "reads output %lld of call %lld of '%s': kiln maps layers called once "
                          "with one output",
                          r[k].tensor, r[k].node, r[k].layer);
    }
    return KILN_OK;
}

/* The [layer, node, tensor] entries of input_layers/output_layers (one entry or a list). */
static int history_list(const cJSON *v, const char **names, int max) {
    if (!cJSON_IsArray(v)) return 0;
    if (cJSON_IsString(cJSON_GetArrayItem(v, 0))) {
        names[0] = cJSON_GetArrayItem(v, 0)->valuestring;
        return 1;
    }
    int n = 0;
    for (const cJSON *e = v->child; e && n < max; e = e->next)
        if (cJSON_IsArray(e) && cJSON_IsString(cJSON_GetArrayItem(e, 0)))
            names[n++] = cJSON_GetArrayItem(e, 0)->valuestring;
    return n;
}

/* A functional graph. n_bound > 0: a nested model whose inputs are those nodes. A layer entry
   with "unused": true is one that Keras left out of the model (kiln_keras.py writes them): it
   is mapped like the others, where it was applied, and the lint then reports it. */
static kiln_status map_functional(kx *c, const cJSON *cfg, const char *name, int n_bound,
                                  char bound[][KILN_MODEL_MAX_NAME],
                                  char out[][KILN_MODEL_MAX_NAME], int *n_out) {
    const cJSON *layers = get(cfg, "layers");
    if (!cJSON_IsArray(layers))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: model '%s' has no layer list", c->path, name);
    if (++c->depth > KX_MAX_DEPTH)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: models nested deeper than %d", c->path,
                          KX_MAX_DEPTH);
    const char *ins[KILN_MODEL_MAX_INPUTS], *outs[KILN_MODEL_MAX_INPUTS];
    int n_in = history_list(get(cfg, "input_layers"), ins, KILN_MODEL_MAX_INPUTS);
    int n_o = history_list(get(cfg, "output_layers"), outs, KILN_MODEL_MAX_INPUTS);
    kiln_status st = KILN_OK;
    if (n_bound && n_bound != n_in)
        st = kiln_error(KILN_INVALID_ARGUMENT, "%s: model '%s' takes %d inputs but is called on %d",
                        c->path, name, n_in, n_bound);
    if (!st && !n_o)
        st = kiln_error(KILN_INVALID_ARGUMENT, "%s: model '%s' declares no output_layers", c->path,
                        name);
    kx_scope scope = {0};
    int idx = 0;
    for (const cJSON *j = layers->child; j && !st; j = j->next) {
        int unused = cJSON_IsTrue(get(j, "unused"));
        char label[192];
        if (unused)
            snprintf(label, sizeof label, "%s%snot in model.layers", n_bound ? name : "",
                     n_bound ? ": " : "");
        else if (n_bound)
            snprintf(label, sizeof label, "%s.layers[%d]", name, idx);
        else
            snprintf(label, sizeof label, "layers[%d]", idx);
        idx += !unused;
        kx_layer L;
        if ((st = layer_init(c, &L, j, label))) break;
        if (!strcmp(L.cls, "InputLayer")) {
            int k = 0;
            while (k < n_in && strcmp(ins[k], L.name)) k++;
            if (!n_bound) {
                st = map_input(c, &L);
            } else if (k == n_in) {
                st = kx_err(c, &L, "is not one of the model's input_layers");
            } else {
                snprintf(L.out, sizeof L.out, "%s", bound[k]);
            }
        } else {
            kx_ref r[KILN_MODEL_MAX_INPUTS];
            int n = 0;
            st = layer_refs(c, &L, j, r, &n);
            for (int k = 0; k < n && !st; k++) {
                const char *node = alias_get(&scope, r[k].layer);
                if (!node) {
                    st = kx_err(c, &L, "reads '%s', which no earlier layer defines", r[k].layer);
                    break;
                }
                snprintf(L.in[k], sizeof L.in[k], "%s", node);
                L.in_rank[k] = r[k].rank;
            }
            L.n_in = n;
            if (!st) st = map_layer(c, &L);
        }
        if (!st) st = alias_set(&scope, L.name, L.out);
    }
    for (int k = 0; k < n_o && !st; k++) {
        const char *node = alias_get(&scope, outs[k]);
        if (!node)
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "%s: model '%s': output layer '%s' is not a layer", c->path, name,
                            outs[k]);
        else
            snprintf(out[k], KILN_MODEL_MAX_NAME, "%s", node);
    }
    *n_out = n_o;
    free(scope.a);
    c->depth--;
    return st;
}

/* The number of classes: the units of the dense layer an output comes from. */
static void set_classes(struct kiln_model *m, const char *out) {
    for (int i = kiln_model_find(m, out); i >= 0;) {
        const km_node *nd = &m->nodes[i];
        if (nd->spec->id == KM_L_DENSE) {
            const char *u = kiln_model_attr(m, i, "units");
            if (u) km_set_var(m, 0, "classes", u);
            return;
        }
        if (nd->n_in != 1 || (nd->spec->flags & KM_F_WEIGHTED)) return;
        i = kiln_model_find(m, nd->in_name[0]);
    }
}

/* ---- reading the file ---- */
static kiln_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_IO, "%s: cannot open the model file", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    kiln_status st = KILN_OK;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? 2 * cap : 131072;
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 65536, f);
        len += got;
        if (len > KX_JSON_LIMIT) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "%s: larger than %u MiB: not a model config",
                            path, KX_JSON_LIMIT >> 20);
            break;
        }
        if (got < 65536) break;
    }
    if (!st && ferror(f)) st = kiln_error(KILN_IO, "%s: read error", path);
    fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *out = buf;
    return KILN_OK;
}

int km_is_keras_path(const char *path) {
    size_t n = strlen(path);
    return (n > 6 && !strcmp(path + n - 6, ".keras")) || (n > 5 && !strcmp(path + n - 5, ".json"));
}

kiln_status km_load_keras(const char *path, struct kiln_model **out) {
    *out = NULL;
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_NOT_FOUND, "%s: cannot open the Keras model", path);
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    int zip = got == 4 && !memcmp(magic, "PK\3\4", 4);
    char *text = NULL;
    size_t len = 0;
    kiln_status st = zip ? kiln_zip_read(path, "config.json", KX_JSON_LIMIT, &text, &len)
                         : read_text(path, &text);
    if (st) return st;
    const char *part = zip ? "config.json: " : "";
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        long at = e && e >= text && e <= text + strlen(text) ? (long)(e - text) : -1;
        free(text);
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: %snot valid JSON (near byte %ld)", path, part,
                          at);
    }
    free(text);
    const char *cls = get_str(root, "class_name");
    const cJSON *cfg = get(root, "config");
    if (!cls || !cJSON_IsObject(cfg)) {
        cJSON_Delete(root);
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: %sno class_name/config at the top: not a Keras model config", path,
                          part);
    }
    kiln_model_t m;
    if ((st = kiln_model_init(&m, path))) {
        cJSON_Delete(root);
        return st;
    }
    m->keras = 1;
    kx c = {m, path, 0};
    const char *name = get_str(cfg, "name") ? get_str(cfg, "name") : cls;
    char outs[KILN_MODEL_MAX_INPUTS][KILN_MODEL_MAX_NAME];
    int n_out = 0;
    if (!strcmp(cls, "Sequential")) {
        st = map_sequential(&c, cfg, name, NULL, outs[0]);
        n_out = 1;
    } else if (!strcmp(cls, "Functional") || !strcmp(cls, "Model")) {
        st = map_functional(&c, cfg, name, 0, NULL, outs, &n_out);
    } else {
        st = kiln_error(KILN_INVALID_ARGUMENT,
                        "%s: %sa %s is not a model kiln maps (Sequential or Functional)", path,
                        part, cls);
    }
    for (int k = 0; k < n_out && !st; k++) st = km_add_output(m, 0, outs[k]);
    if (!st && n_out == 1) set_classes(m, outs[0]);
    cJSON_Delete(root);
    if (st) {
        kiln_model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}
