/* Finalize: variables, input names, shape inference, parameter/FLOP/memory counts, and the
   lint that turns the story's silent mistake (augmentation and rescale computed but unused,
   raw pixels reaching the first convolution) into an error that says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "kiln/ops.h"
#include "model-impl.h"

/* One layer's parameters or one activation for a batch beyond this is a typo, not a model:
   refuse with the size rather than fail an allocation later. */
#define KM_SIZE_LIMIT (256.0 * 1024 * 1024 * 1024)
#define KM_FLOP_LIMIT 9e18

static int is_hostside(const km_node *n) {
    return n->spec->id == KM_L_INPUT || (n->spec->flags & KM_F_HOST);
}

static const char *kind_word(const km_node *n) {
    if (n->spec->id == KM_L_CONV2D) return "convolution";
    if (n->spec->id == KM_L_DENSE) return "dense layer";
    if (n->spec->flags & KM_F_HOST) return "augmentation";
    if (n->spec->id == KM_L_RESCALE) return "rescale";
    if (n->spec->id == KM_L_NORMALIZE) return "normalization";
    return n->spec->type;
}

/* "'c1' (conv2d, line 4)", "'conv2d' (conv2d, layers[3])" for a Keras model */
static void desc(const struct kiln_model *m, const km_node *n, char *out, size_t cap) {
    char l[128];
    km_line_str(m, n->line, l, sizeof l);
    if (*l)
        snprintf(out, cap, "'%s' (%s, %.100s)", n->name, n->spec->type, l);
    else
        snprintf(out, cap, "'%s' (%s)", n->name, n->spec->type);
}

static void shape_str(const km_node *n, char *out, size_t cap) {
    if (n->ndim == 4)
        snprintf(out, cap, "(N, %lld, %lld, %lld)", (long long)n->shape[1], (long long)n->shape[2],
                 (long long)n->shape[3]);
    else
        snprintf(out, cap, "(N, %lld)", (long long)n->shape[1]);
}

static void human(double b, char *out, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    while (b >= 1024 && i < 6) b /= 1024, i++;
    snprintf(out, cap, "%.1f %s", b, u[i]);
}

/* ---- variables and attributes ---- */
static kiln_status substitute(struct kiln_model *m, const km_node *nd, const char *key,
                              const char *raw, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = raw; *p;) {
        if (*p != '{') {
            if (o + 1 >= cap) break;
            out[o++] = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close || close - p - 1 <= 0 || close - p - 1 >= KILN_MODEL_MAX_NAME)
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                 "bad attribute %s=%s: malformed {variable}", key, raw);
        char name[KILN_MODEL_MAX_NAME];
        snprintf(name, sizeof name, "%.*s", (int)(close - p - 1), p + 1);
        const char *v = km_get_var(m, name);
        if (!v) {
            const char *hint = "define it with a 'var NAME = VALUE' line or kiln_model_set_var";
            if (!strcmp(name, "classes"))
                hint = "give the class count (--classes N, kiln_model_config.classes)";
            else if (!strncmp(name, "input_", 6))
                hint = "give the input size (--input HxWxC, kiln_model_config.input_h/w/c)";
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                 "attribute %s=%s: variable {%s} has no value: %s", key, raw, name,
                                 hint);
        }
        size_t vl = strlen(v);
        if (o + vl + 1 >= cap) break;
        memcpy(out + o, v, vl);
        o += vl;
        p = close + 1;
    }
    out[o] = '\0';
    return KILN_OK;
}

static kiln_status resolve_attrs(struct kiln_model *m, km_node *nd) {
    for (int k = 0; nd->spec->attrs[k].key; k++) {
        const km_attr_spec *s = &nd->spec->attrs[k];
        km_attr_val *v = &nd->av[k];
        free(v->text);
        v->text = NULL;
        v->set = 0;
        const char *src = v->raw ? v->raw : s->def;
        if (!src || !*src) continue; /* optional without a default */
        char buf[512];
        kiln_status st = substitute(m, nd, s->key, src, buf, sizeof buf);
        if (st) return st;
        char why[256];
        if (km_parse_value(s, buf, v, why, sizeof why)) {
            if (strcmp(buf, src))
                return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "bad attribute %s=%s (= %s): %s",
                                     s->key, src, buf, why);
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "bad attribute %s=%s: %s", s->key,
                                 src, why);
        }
        if (!(v->text = km_strdup(buf))) return kiln_error(KILN_OUT_OF_MEMORY, "out of memory");
        v->set = 1;
    }
    return KILN_OK;
}

static const km_attr_val *attr(const km_node *nd, const char *key) {
    int k = km_attr_index(nd->spec, key);
    return k >= 0 && nd->av[k].set ? &nd->av[k] : NULL;
}

static kiln_status resolve_inputs(struct kiln_model *m, int i) {
    km_node *nd = &m->nodes[i];
    for (int k = 0; k < nd->n_in; k++) {
        int j = kiln_model_find(m, nd->in_name[k]);
        if (j < 0) {
            const char *close = km_closest_name(m, nd->in_name[k]);
            char hint[128] = "";
            if (close) snprintf(hint, sizeof hint, " (did you mean '%s'?)", close);
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "unknown input '%s'%s",
                                 nd->in_name[k], hint);
        }
        if (j == i)
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                 "reads its own output: a cycle (a model is a DAG)");
        if (j > i) {
            char d[256];
            desc(m, &m->nodes[j], d, sizeof d);
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                 "input '%s' is used before its definition %s: define nodes before "
                                 "the nodes that read them (which also rules out cycles)",
                                 nd->in_name[k], d);
        }
        nd->in[k] = j;
    }
    return KILN_OK;
}

/* ---- shape inference ---- */

/* TensorFlow's "same": output = ceil(in / stride), the extra padding at the end. */
static void same_pad(int64_t in, int64_t k, int64_t s, int64_t d, int64_t *lo, int64_t *hi) {
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
    if (total < 0) total = 0;
    *lo = total / 2;
    *hi = total - *lo;
}

static kiln_status need4(struct kiln_model *m, const km_node *nd, const km_node *x) {
    if (x->ndim == 4) return KILN_OK;
    char s[96];
    shape_str(x, s, sizeof s);
    return km_node_error(KILN_SHAPE, m, nd,
                         "reads '%s' of shape %s; %s needs a 4-D (N, C, H, W) input", x->name, s,
                         nd->spec->type);
}

static void set4(km_node *nd, int64_t c, int64_t h, int64_t w) {
    nd->ndim = 4;
    nd->shape[1] = c;
    nd->shape[2] = h;
    nd->shape[3] = w;
}

static void set2(km_node *nd, int64_t f) {
    nd->ndim = 2;
    nd->shape[1] = f;
    nd->shape[2] = nd->shape[3] = 0;
}

static double numel(const km_node *n) {
    double e = 1;
    for (int d = 1; d < n->ndim; d++) e *= (double)n->shape[d];
    return e;
}

static kiln_status spatial(struct kiln_model *m, km_node *nd, const km_node *x, int is_pool,
                           double *flops, double *params) {
    const km_attr_val *kv = attr(nd, is_pool ? "pool" : "kernel");
    const km_attr_val *sv = attr(nd, "stride");
    const km_attr_val *dv = is_pool ? NULL : attr(nd, "dilation");
    const km_attr_val *pv = attr(nd, "padding");
    int64_t kh = kv->i[0], kw = kv->i[1];
    int64_t sh = sv ? sv->i[0] : kh, sw = sv ? sv->i[1] : kw;
    int64_t dh = dv ? dv->i[0] : 1, dw = dv ? dv->i[1] : 1;
    int64_t H = x->shape[2], W = x->shape[3], C = x->shape[1];
    int64_t pt, pb, pl, pr;
    if (pv->e) {
        same_pad(H, kh, sh, dh, &pt, &pb);
        same_pad(W, kw, sw, dw, &pl, &pr);
    } else {
        pt = pv->i[0], pb = pv->i[1], pl = pv->i[2], pr = pv->i[3];
    }
    int64_t oh, ow;
    if (is_pool) {
        int c = attr(nd, "ceil")->e;
        oh = kiln_pool2d_out_size(H, kh, sh, pt, pb, c);
        ow = kiln_pool2d_out_size(W, kw, sw, pl, pr, c);
    } else {
        oh = kiln_conv2d_out_size(H, kh, sh, pt, pb, dh);
        ow = kiln_conv2d_out_size(W, kw, sw, pl, pr, dw);
    }
    if (oh <= 0 || ow <= 0)
        return km_node_error(
            KILN_SHAPE, m, nd,
            "input %lldx%lld (from '%s') is too small for a %lldx%lld %s (stride %lldx%lld, "
            "padding %lld/%lld/%lld/%lld%s): use a larger input%s",
            (long long)H, (long long)W, x->name, (long long)kh, (long long)kw,
            is_pool ? "pool" : "kernel", (long long)sh, (long long)sw, (long long)pt, (long long)pb,
            (long long)pl, (long long)pr, is_pool && !attr(nd, "ceil")->e ? ", floor mode" : "",
            !is_pool              ? " or padding=same"
            : attr(nd, "ceil")->e ? " or padding"
                                  : ", padding or ceil=true");
    if (is_pool) {
        set4(nd, C, oh, ow);
        *flops = (double)kh * (double)kw * numel(nd);
        return KILN_OK;
    }
    int64_t O = attr(nd, "filters")->i[0], g = attr(nd, "groups")->i[0];
    if (C % g || O % g)
        return km_node_error(KILN_SHAPE, m, nd,
                             "groups=%lld must divide the input channels %lld (from '%s') and "
                             "filters=%lld",
                             (long long)g, (long long)C, x->name, (long long)O);
    int bias = attr(nd, "bias")->e;
    set4(nd, O, oh, ow);
    double per_out = (double)(C / g) * (double)kh * (double)kw;
    *params = (double)O * per_out + (bias ? (double)O : 0);
    *flops = 2 * per_out * numel(nd) + (bias ? numel(nd) : 0);
    return KILN_OK;
}

/* One layer's output shape (nd->shape already holds its first input's), FLOPs per image
   and parameter count. x: the first input, NULL for the input. */
typedef kiln_status (*infer_fn)(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                                double *params);

static kiln_status infer_input(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                               double *params) {
    const km_attr_val *s = attr(nd, "shape");
    if (s->n != 3) return km_node_error(KILN_SHAPE, m, nd, "shape=%s must be HxWxC", s->text);
    set4(nd, s->i[2], s->i[0], s->i[1]);
    nd->dtype = attr(nd, "dtype")->e == 0 ? KILN_U8 : KILN_F32;
    if (nd->dtype == KILN_U8 && s->i[2] > 4)
        return km_node_error(KILN_SHAPE, m, nd,
                             "a u8 input has 1 to 4 channels (the uint8 upload converts at "
                             "most 4), got %lld",
                             (long long)s->i[2]);
    return KILN_OK;
}

/* The data pipeline's nodes: the input's dtype, a new size where they have one. */
static kiln_status infer_host(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                              double *params) {
    kiln_status st;
    km_layer_id id = nd->spec->id;
    if ((st = need4(m, nd, x))) return st;
    nd->dtype = x->dtype;
    const km_attr_val *sz = attr(nd, "size");
    int64_t H = x->shape[2], W = x->shape[3];
    if (sz) {
        if (id == KM_L_CENTER_CROP && (sz->i[0] > H || sz->i[1] > W))
            return km_node_error(
                KILN_SHAPE, m, nd, "size=%lldx%lld is larger than its input %lldx%lld",
                (long long)sz->i[0], (long long)sz->i[1], (long long)H, (long long)W);
        if (id == KM_L_RANDOM_CROP) {
            int64_t p = attr(nd, "padding")->i[0];
            if (sz->i[0] > H + 2 * p || sz->i[1] > W + 2 * p)
                return km_node_error(KILN_SHAPE, m, nd,
                                     "size=%lldx%lld is larger than its padded input "
                                     "%lldx%lld",
                                     (long long)sz->i[0], (long long)sz->i[1],
                                     (long long)(H + 2 * p), (long long)(W + 2 * p));
        }
        set4(nd, x->shape[1], sz->i[0], sz->i[1]);
    }
    if (id == KM_L_RANDOM_SATURATION && x->shape[1] != 3)
        return km_node_error(KILN_SHAPE, m, nd, "needs 3 channels (RGB), '%s' has %lld", x->name,
                             (long long)x->shape[1]);
    return KILN_OK;
}

/* conv2d, maxpool, avgpool */
static kiln_status infer_spatial(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                                 double *params) {
    kiln_status st;
    if ((st = need4(m, nd, x))) return st;
    return spatial(m, nd, x, nd->spec->id != KM_L_CONV2D, flops, params);
}

static kiln_status infer_dense(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                               double *params) {
    if (x->ndim != 2) {
        char s[96];
        shape_str(x, s, sizeof s);
        return km_node_error(KILN_SHAPE, m, nd,
                             "reads '%s' of shape %s; dense needs (N, features): insert "
                             "flatten",
                             x->name, s);
    }
    int64_t U = attr(nd, "units")->i[0];
    int bias = attr(nd, "bias")->e;
    *params = (double)x->shape[1] * (double)U + (bias ? (double)U : 0);
    *flops = 2.0 * (double)x->shape[1] * (double)U + (bias ? (double)U : 0);
    set2(nd, U);
    return KILN_OK;
}

static kiln_status infer_global_avg_pool(struct kiln_model *m, km_node *nd, const km_node *x,
                                         double *flops, double *params) {
    kiln_status st;
    if ((st = need4(m, nd, x))) return st;
    *flops = numel(x);
    set2(nd, x->shape[1]);
    return KILN_OK;
}

static kiln_status infer_lrn(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                             double *params) {
    kiln_status st;
    if ((st = need4(m, nd, x))) return st;
    *flops = numel(nd) * (double)(attr(nd, "size")->i[0] + 4);
    return KILN_OK;
}

static kiln_status infer_batchnorm(struct kiln_model *m, km_node *nd, const km_node *x,
                                   double *flops, double *params) {
    *params = 2.0 * (double)x->shape[1];
    *flops = 2 * numel(nd);
    return KILN_OK;
}

/* add, concat */
static kiln_status infer_merge(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                               double *params) {
    int cat = nd->spec->id == KM_L_CONCAT;
    int64_t csum = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const km_node *y = &m->nodes[nd->in[k]];
        int same = y->ndim == x->ndim;
        for (int d = 1; same && d < x->ndim; d++)
            if (y->shape[d] != x->shape[d] && !(cat && d == 1)) same = 0;
        if (!same) {
            char a[96], b[96];
            shape_str(x, a, sizeof a);
            shape_str(y, b, sizeof b);
            return km_node_error(KILN_SHAPE, m, nd,
                                 "'%s' has shape %s but '%s' has %s (%s needs %s)", x->name, a,
                                 y->name, b, nd->spec->type,
                                 cat ? "equal shapes except the channels" : "equal shapes");
        }
        csum += y->shape[1];
    }
    if (cat)
        nd->shape[1] = csum;
    else
        *flops = numel(nd) * (nd->n_in - 1);
    return KILN_OK;
}

static kiln_status infer_flatten(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                                 double *params) {
    set2(nd, (int64_t)numel(x));
    return KILN_OK;
}

static kiln_status infer_reshape(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                                 double *params) {
    const km_attr_val *s = attr(nd, "shape");
    double want = 1;
    for (int k = 0; k < s->n; k++) want *= (double)s->i[k];
    if (s->n == 2 || want != numel(x)) {
        char a[96];
        shape_str(x, a, sizeof a);
        return km_node_error(KILN_SHAPE, m, nd,
                             "shape=%s (CxHxW or F) does not hold the %.0f values of '%s' %s",
                             s->text, numel(x), x->name, a);
    }
    if (s->n == 3)
        set4(nd, s->i[0], s->i[1], s->i[2]);
    else
        set2(nd, s->i[0]);
    return KILN_OK;
}

static kiln_status infer_softmax(struct kiln_model *m, km_node *nd, const km_node *x, double *flops,
                                 double *params) {
    if (x->ndim != 2) {
        char a[96];
        shape_str(x, a, sizeof a);
        return km_node_error(KILN_SHAPE, m, nd, "reads '%s' of shape %s; softmax needs (N, K)",
                             x->name, a);
    }
    *flops = 3 * numel(nd);
    return KILN_OK;
}

static kiln_status infer_normalize(struct kiln_model *m, km_node *nd, const km_node *x,
                                   double *flops, double *params) {
    const km_attr_val *mean = attr(nd, "mean"), *sd = attr(nd, "std");
    int64_t C = x->shape[1];
    if ((mean->n != 1 && mean->n != C) || (sd->n != 1 && sd->n != C))
        return km_node_error(KILN_SHAPE, m, nd,
                             "mean has %d and std %d values; '%s' has %lld channels (give 1 "
                             "or one per channel)",
                             mean->n, sd->n, x->name, (long long)C);
    *flops = 2 * numel(nd);
    return KILN_OK;
}

/* activations, dropout, rescale: elementwise */
static kiln_status infer_elementwise(struct kiln_model *m, km_node *nd, const km_node *x,
                                     double *flops, double *params) {
    *flops = (nd->spec->flags & KM_F_PREPROC ? 2 : 1) * numel(nd);
    return KILN_OK;
}

static const infer_fn inferers[KM_L_COUNT] = {
    [KM_L_INPUT] = infer_input,
    [KM_L_CONV2D] = infer_spatial,
    [KM_L_DENSE] = infer_dense,
    [KM_L_RELU] = infer_elementwise,
    [KM_L_LEAKY_RELU] = infer_elementwise,
    [KM_L_ELU] = infer_elementwise,
    [KM_L_SIGMOID] = infer_elementwise,
    [KM_L_TANH] = infer_elementwise,
    [KM_L_GELU] = infer_elementwise,
    [KM_L_MAXPOOL] = infer_spatial,
    [KM_L_AVGPOOL] = infer_spatial,
    [KM_L_GLOBAL_AVG_POOL] = infer_global_avg_pool,
    [KM_L_LRN] = infer_lrn,
    [KM_L_BATCHNORM] = infer_batchnorm,
    [KM_L_DROPOUT] = infer_elementwise,
    [KM_L_ADD] = infer_merge,
    [KM_L_CONCAT] = infer_merge,
    [KM_L_FLATTEN] = infer_flatten,
    [KM_L_RESHAPE] = infer_reshape,
    [KM_L_SOFTMAX] = infer_softmax,
    [KM_L_RESCALE] = infer_elementwise,
    [KM_L_NORMALIZE] = infer_normalize,
    [KM_L_RANDOM_FLIP] = infer_host,
    [KM_L_RANDOM_CROP] = infer_host,
    [KM_L_RANDOM_RESIZED_CROP] = infer_host,
    [KM_L_RANDOM_ROTATION] = infer_host,
    [KM_L_RANDOM_TRANSLATION] = infer_host,
    [KM_L_RANDOM_ZOOM] = infer_host,
    [KM_L_RANDOM_BRIGHTNESS] = infer_host,
    [KM_L_RANDOM_CONTRAST] = infer_host,
    [KM_L_RANDOM_SATURATION] = infer_host,
    [KM_L_RANDOM_ERASING] = infer_host,
    [KM_L_CENTER_CROP] = infer_host,
    [KM_L_RESIZE] = infer_host,
};

int km_layer_infers(km_layer_id id) {
    return (unsigned)id < KM_L_COUNT && inferers[id];
}

static kiln_status infer(struct kiln_model *m, km_node *nd) {
    const km_node *x = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    double flops = 0, params = 0;
    kiln_status st = KILN_OK;
    nd->dtype = KILN_F32;
    if (x) {
        nd->ndim = x->ndim;
        memcpy(nd->shape, x->shape, sizeof nd->shape);
    }
    if (!km_layer_infers(nd->spec->id))
        return km_node_error(KILN_INTERNAL, m, nd, "no shape inference for this node type");
    if ((st = inferers[nd->spec->id](m, nd, x, &flops, &params))) return st;
    double bytes = numel(nd) * (double)kiln_dtype_size(nd->dtype) * (double)nd->shape[0];
    char h[32], s[96];
    if (bytes > KM_SIZE_LIMIT) {
        human(bytes, h, sizeof h);
        shape_str(nd, s, sizeof s);
        return km_node_error(KILN_SHAPE, m, nd,
                             "output %s needs %s for a batch of %lld: refused (limit 256 GiB "
                             "per tensor)",
                             s, h, (long long)nd->shape[0]);
    }
    if (params * 4 > KM_SIZE_LIMIT) {
        human(params * 4, h, sizeof h);
        return km_node_error(KILN_SHAPE, m, nd,
                             "%.4g parameters need %s: refused (limit 256 GiB per tensor)", params,
                             h);
    }
    if (flops > KM_FLOP_LIMIT)
        return km_node_error(KILN_SHAPE, m, nd, "%.4g FLOPs per image: refused", flops);
    nd->params = (int64_t)params;
    nd->flops = (int64_t)flops;
    return KILN_OK;
}

/* ---- lint ---- */
static kiln_status check_placement(struct kiln_model *m, const km_node *nd) {
    unsigned f = nd->spec->flags;
    if (!(f & (KM_F_HOST | KM_F_PREPROC))) return KILN_OK;
    for (int k = 0; k < nd->n_in; k++) {
        const km_node *x = &m->nodes[nd->in[k]];
        if (is_hostside(x)) continue;
        if ((f & KM_F_PREPROC) && (x->spec->flags & KM_F_PREPROC)) continue;
        char d[256];
        desc(m, x, d, sizeof d);
        if (f & KM_F_HOST)
            return km_node_error(
                KILN_INVALID_ARGUMENT, m, nd,
                "augmentation runs in the data pipeline's workers before the upload, so it must "
                "read the input or another augmentation node; it reads %s%s",
                d, x->spec->flags & KM_F_PREPROC ? ": move it before the rescale/normalize" : "");
        return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                             "%s fuses into the on-device uint8 conversion, so it must read the "
                             "input (directly, through augmentation or another rescale/normalize); "
                             "it reads %s",
                             nd->spec->type, d);
    }
    return KILN_OK;
}

/* ---- the input-scale lint ----
   Networks initialised with He/Glorot/LeCun assume inputs of order one. The usual
   preprocessing lands within a factor of 3 of that: rescale(1/255) gives max |x| = 1, the
   [-1, 1] rescale 1, ImageNet's mean/std after 1/255 (or given in 0-255 units) 2.6, MNIST's
   (0.1307, 0.3081) 2.8, CIFAR's 2.1. The mistakes are an order of magnitude or more away: raw
   0-255 pixels give 255, normalize(mean=0.5, std=0.25) on 0-255 input 1020, a 1/255 rescale
   applied twice 0.0039. The thresholds are a factor of 20 either side of 1 (symmetric on a
   log scale): 7x of margin above the usual normalizations, 12x and more to each mistake. The
   same rule judges the interval the lint propagates and the first batch's observed min/max
   (train.c), so the two can never disagree on what "far from unit scale" means. */
#define KM_SCALE_HIGH 20.0
#define KM_SCALE_LOW  0.05

int km_scale_check(double lo, double hi, char *why, size_t n) {
    double a = fmax(fabs(lo), fabs(hi));
    int r = !isfinite(a) || a > KM_SCALE_HIGH ? 1 : a < KM_SCALE_LOW ? -1 : 0;
    if (why && n) {
        if (r && !isfinite(a))
            snprintf(why, n, "max |x| = %g is not finite", a);
        else if (r)
            snprintf(why, n, "max |x| = %.3g is far %s unit scale (%c %g)", a,
                     r > 0 ? "above" : "below", r > 0 ? '>' : '<',
                     r > 0 ? KM_SCALE_HIGH : KM_SCALE_LOW);
        else
            why[0] = '\0';
    }
    return r;
}

/* [lo, hi] * [a, b] */
static void interval_mul(double *lo, double *hi, double a, double b) {
    double p[4] = {*lo * a, *lo * b, *hi * a, *hi * b};
    *lo = fmin(fmin(p[0], p[1]), fmin(p[2], p[3]));
    *hi = fmax(fmax(p[0], p[1]), fmax(p[2], p[3]));
}

/* A monotone activation applied to both ends. */
static double monotone_act(const km_node *nd, double x) {
    switch (nd->spec->id) {
    case KM_L_RELU:
        return x > 0 ? x : 0;
    case KM_L_LEAKY_RELU:
        return x > 0 ? x : attr(nd, "alpha")->f[0] * x;
    case KM_L_ELU:
        return x > 0 ? x : attr(nd, "alpha")->f[0] * expm1(x);
    case KM_L_SIGMOID:
        return 1 / (1 + exp(-x));
    default:
        return tanh(x);
    }
}

/* The interval of values node nd outputs, from its inputs' (the lint runs in file order, a
   topological order). Known only from a u8 input (0-255; an f32 input declares no range)
   through nodes whose effect on the values is known; batchnorm, lrn, gelu and the weighted
   layers end it. */
static void propagate_range(struct kiln_model *m, km_node *nd) {
    km_layer_id id = nd->spec->id;
    nd->ranged = 0;
    if (id == KM_L_INPUT) {
        nd->ranged = nd->dtype == KILN_U8;
        nd->lo = 0;
        nd->hi = 255;
        return;
    }
    for (int k = 0; k < nd->n_in; k++)
        if (!m->nodes[nd->in[k]].ranged) return;
    const km_node *x = &m->nodes[nd->in[0]];
    double lo = x->lo, hi = x->hi;
    if (id == KM_L_RESCALE) {
        double s = attr(nd, "scale")->f[0], o = attr(nd, "offset")->f[0];
        interval_mul(&lo, &hi, s, s);
        lo += o, hi += o;
    } else if (id == KM_L_NORMALIZE) {
        /* Per-channel lists: the union over the channels (std > 0 by its range check). */
        const km_attr_val *mv = attr(nd, "mean"), *sv = attr(nd, "std");
        int c = mv->n > sv->n ? mv->n : sv->n;
        double l = HUGE_VAL, h = -HUGE_VAL;
        for (int k = 0; k < c; k++) {
            double mu = mv->f[mv->n == 1 ? 0 : k], sd = sv->f[sv->n == 1 ? 0 : k];
            l = fmin(l, (lo - mu) / sd);
            h = fmax(h, (hi - mu) / sd);
        }
        lo = l, hi = h;
    } else if (nd->spec->flags & KM_F_HOST) {
        /* Geometry moves pixels (resampling with non-negative weights stays inside the
           range), zero padding and erasing add values the u8 range holds. Brightness
           multiplies by a factor in [1 - delta, 1 + delta]; contrast and saturation move a
           value away from a mean inside [lo, hi] by up to factor x (hi - lo). The pipeline
           works on u8 images and saturates, so for u8 data all of it stays in [0, 255]. */
        if (id == KM_L_RANDOM_BRIGHTNESS) {
            double d = attr(nd, "delta")->f[0];
            interval_mul(&lo, &hi, 1 - d, 1 + d);
        } else if (id == KM_L_RANDOM_CONTRAST || id == KM_L_RANDOM_SATURATION) {
            double w = attr(nd, "factor")->f[0] * (hi - lo);
            lo -= w, hi += w;
        }
        if (nd->dtype == KILN_U8) lo = fmax(lo, 0), hi = fmin(hi, 255);
    } else if (id == KM_L_AVGPOOL && attr(nd, "count_include_pad")->e) {
        lo = fmin(lo, 0), hi = fmax(hi, 0); /* zero padding averaged in */
    } else if (id == KM_L_ADD || id == KM_L_CONCAT) {
        for (int k = 1; k < nd->n_in; k++) {
            const km_node *y = &m->nodes[nd->in[k]];
            if (id == KM_L_ADD)
                lo += y->lo, hi += y->hi;
            else
                lo = fmin(lo, y->lo), hi = fmax(hi, y->hi);
        }
    } else if (id == KM_L_RELU || id == KM_L_LEAKY_RELU || id == KM_L_ELU || id == KM_L_SIGMOID ||
               id == KM_L_TANH) {
        lo = monotone_act(nd, lo), hi = monotone_act(nd, hi);
    } else if (!(nd->spec->flags & KM_F_VIEW) && id != KM_L_MAXPOOL && id != KM_L_AVGPOOL &&
               id != KM_L_GLOBAL_AVG_POOL && id != KM_L_DROPOUT) {
        return; /* batchnorm, lrn, gelu, softmax, conv2d, dense: unknown after them */
    }
    /* Views and pooling keep the interval as it is (a window's max or mean lies in it), so
       does dropout: identity at eval, and training's 1/(1 - rate) keeps the expectation,
       the scale this check is about. */
    nd->ranged = 1;
    nd->lo = lo;
    nd->hi = hi;
}

/* The input lints follow one of two flags back to the input: raw (integer-range values, no
   rescale/normalize yet) or ranged (a known interval). */
static int on_path(const km_node *p, int raw) {
    return raw ? p->raw : p->ranged;
}

static int first_input_on_path(const struct kiln_model *m, const km_node *p, int raw) {
    for (int k = 0; k < p->n_in; k++)
        if (on_path(&m->nodes[p->in[k]], raw)) return p->in[k];
    return -1;
}

/* The path from node j back to the input along the flag: chain[0] = j, chain[n - 1] the
   input; "image -> flip -> " (input first) in path. Returns n. */
static int input_path(const struct kiln_model *m, int j, int raw, int *chain, int cap, char *path,
                      size_t pcap) {
    int n = 0;
    for (; j >= 0 && n < cap; j = first_input_on_path(m, &m->nodes[j], raw)) chain[n++] = j;
    size_t l = 0;
    path[0] = '\0';
    for (int k = n - 1; k >= 0 && l < pcap; k--)
        l += (size_t)snprintf(path + l, pcap - l, "%s -> ", m->nodes[chain[k]].name);
    return n;
}

/* "rescale 's' (scale=1/255, line 3)": the attributes written, else the defaults. */
static void preproc_desc(const struct kiln_model *m, const km_node *nd, char *out, size_t cap) {
    size_t l = (size_t)snprintf(out, cap, "%s '%s' (", nd->spec->type, nd->name);
    int written = 0, first = 1;
    for (int k = 0; nd->spec->attrs[k].key; k++) written |= nd->av[k].raw != NULL;
    for (int k = 0; nd->spec->attrs[k].key && l < cap; k++) {
        const km_attr_val *v = &nd->av[k];
        if (!v->set || (written && !v->raw)) continue;
        l += (size_t)snprintf(out + l, cap - l, "%s%s=%s", first ? "" : ", ",
                              nd->spec->attrs[k].key, v->text);
        first = 0;
    }
    char ls[128];
    km_line_str(m, nd->line, ls, sizeof ls);
    if (l < cap && *ls) l += (size_t)snprintf(out + l, cap - l, "%s%s", first ? "" : ", ", ls);
    if (l < cap) snprintf(out + l, cap - l, ")");
}

/* The scale lint: the interval reaching a conv/dense (in = its input on the path) is far
   from unit scale. Names the path, the rescale/normalize nodes on it, and the likely cause. */
static void warn_scale(struct kiln_model *m, const km_node *nd, int in) {
    const km_node *x = &m->nodes[in];
    char why[128];
    int dir = km_scale_check(x->lo, x->hi, why, sizeof why);
    if (!dir) return;
    char path[512], pre[1024] = "", hint[512] = "";
    int chain[64];
    int n = input_path(m, in, 0, chain, 64, path, sizeof path);
    int n_pre = 0, n_rescale = 0, big_norm = -1;
    size_t l = 0;
    for (int k = n - 1; k >= 0; k--) {
        const km_node *p = &m->nodes[chain[k]];
        if (!(p->spec->flags & KM_F_PREPROC)) continue;
        char d[256];
        preproc_desc(m, p, d, sizeof d);
        if (l < sizeof pre)
            l += (size_t)snprintf(pre + l, sizeof pre - l, "%s%s", n_pre ? ", " : " through ", d);
        n_pre++;
        n_rescale += p->spec->id == KM_L_RESCALE;
        const km_node *pin = &m->nodes[p->in[0]];
        if (p->spec->id == KM_L_NORMALIZE && big_norm < 0 &&
            km_scale_check(pin->lo, pin->hi, NULL, 0) > 0)
            big_norm = chain[k];
    }
    if (dir < 0 && n_rescale > 1) {
        snprintf(hint, sizeof hint, "the input is rescaled %d times: keep one rescale", n_rescale);
    } else if (dir > 0 && big_norm >= 0) {
        const km_node *p = &m->nodes[big_norm], *pin = &m->nodes[p->in[0]];
        const km_attr_val *mv = attr(p, "mean"), *sv = attr(p, "std");
        double top = 0;
        for (int k = 0; k < mv->n; k++) top = fmax(top, fabs(mv->f[k]));
        for (int k = 0; k < sv->n; k++) top = fmax(top, sv->f[k]);
        if (top <= 1) /* mean/std for [0, 1] values, given integer-range ones */
            snprintf(
                hint, sizeof hint,
                "normalize '%s' reads values in [%.3g, %.3g] but its mean and std look like "
                "values in [0, 1] (they are in the units of its input): add 'scaled = "
                "rescale(%s, scale=1/255)' and normalize 'scaled', or give them in 0-255 units",
                p->name, pin->lo, pin->hi, pin->name);
        else
            snprintf(hint, sizeof hint,
                     "normalize '%s' reads values in [%.3g, %.3g] and std=%s leaves them in those "
                     "units: give std in the units of its input (about 58 for 0-255 pixels), or "
                     "rescale first",
                     p->name, pin->lo, pin->hi, sv->text);
    } else {
        snprintf(hint, sizeof hint,
                 "check the rescale scale/offset and the normalize mean/std on the path");
    }
    char where[512];
    km_where(m, nd->line, where, sizeof where);
    km_warn(m, "%snode '%s' (%s): reads values in [%.3g, %.3g]: %s; path %s%s%s: %s", where,
            nd->name, nd->spec->type, x->lo, x->hi, why, path, nd->name, pre, hint);
}

/* The input lints, node by node: u8 values reach a conv/dense with nothing scaling them (the
   raw-integer warning), or scaled to far from unit scale (the scale warning). */
static void lint_input(struct kiln_model *m, int i) {
    km_node *nd = &m->nodes[i];
    propagate_range(m, nd);
    if (nd->spec->id == KM_L_INPUT) {
        nd->raw = nd->dtype == KILN_U8;
        return;
    }
    int raw_in = first_input_on_path(m, nd, 1);
    nd->raw = raw_in >= 0;
    if (nd->spec->flags & KM_F_PREPROC || nd->spec->id == KM_L_BATCHNORM) nd->raw = 0;
    if (!(nd->spec->flags & KM_F_WEIGHTED)) return;
    nd->raw = 0; /* one warning per path is enough */
    if (raw_in < 0) {
        int in = first_input_on_path(m, nd, 0);
        if (in >= 0) warn_scale(m, nd, in);
        return;
    }
    /* The path back to the input, for the message. */
    char path[512];
    int chain[64];
    int n = input_path(m, raw_in, 1, chain, 64, path, sizeof path);
    const km_node *src = &m->nodes[chain[n - 1]];
    char where[512], fix[256];
    km_where(m, nd->line, where, sizeof where);
    if (m->keras)
        snprintf(fix, sizeof fix, "apply layers.Rescaling(1./255) to '%s' and have '%s' read it",
                 src->name, nd->name);
    else
        snprintf(fix, sizeof fix, "add e.g. 'scaled = rescale(%s, scale=1/255)' and read 'scaled'",
                 src->name);
    km_warn(m,
            "%snode '%s' (%s): reads raw integer-range input (0-255): no rescale or normalize on "
            "its path %s%s; %s",
            where, nd->name, nd->spec->type, path, nd->name, fix);
}

static int is_first_weighted(const struct kiln_model *m, int c) {
    for (int i = 0; i < c; i++)
        if (m->nodes[i].spec->flags & KM_F_WEIGHTED) return 0;
    return 1;
}

/* Nodes that reach no output are dead; each dead node nobody reads is reported with the
   chain that only feeds it, and the live node that most likely meant to read it. */
static kiln_status lint_unused(struct kiln_model *m, const char *live) {
    int any = 0;
    for (int i = 0; i < m->n; i++) any |= !live[i];
    if (!any) return KILN_OK;
    kiln_error(KILN_INVALID_ARGUMENT, "%s", "");
    int first = 1;
    for (int s = 0; s < m->n; s++) {
        const km_node *S = &m->nodes[s];
        if (live[s] || S->n_consumers) continue;
        char where[512];
        km_where(m, S->line, where, sizeof where);
        kiln_error_append("%s%snode '%s' (%s) is never used: no node reads it and it is not an "
                          "output",
                          first ? "" : "\n", where, S->name, S->spec->type);
        first = 0;
        /* The dead chain above S, up to the first live ancestor A. */
        int chain[64], n = 0, a = -1;
        for (int j = s; j >= 0 && n < 64;) {
            chain[n++] = j;
            const km_node *p = &m->nodes[j];
            j = -1;
            if (p->n_in) {
                if (live[p->in[0]])
                    a = p->in[0];
                else
                    j = p->in[0];
            }
        }
        for (int k = 1; k < n; k++) {
            const km_node *p = &m->nodes[chain[k]];
            km_where(m, p->line, where, sizeof where);
            kiln_error_append("\n  %snode '%s' (%s) only feeds it", where, p->name, p->spec->type);
        }
        /* The intended consumer: a live node reading A defined after S (it could read S),
           else the next live node. */
        int c = -1;
        for (int j = s + 1; j < m->n && c < 0 && a >= 0; j++) {
            if (!live[j]) continue;
            for (int k = 0; k < m->nodes[j].n_in; k++)
                if (m->nodes[j].in[k] == a) c = j;
        }
        for (int j = s + 1; j < m->n && c < 0; j++)
            if (live[j] && m->nodes[j].n_in) c = j;
        if (c < 0) continue;
        const km_node *C = &m->nodes[c];
        char dc[256];
        desc(m, C, dc, sizeof dc);
        if (a < 0) {
            kiln_error_append("\n  %s most likely meant to read '%s'", dc, S->name);
            continue;
        }
        const km_node *A = &m->nodes[a];
        char da[256];
        desc(m, A, da, sizeof da);
        int reads_a = 0;
        for (int k = 0; k < C->n_in; k++) reads_a |= C->in[k] == a;
        kiln_error_append("\n  %s most likely meant to read '%s'%s%s", dc, S->name,
                          reads_a ? " instead of " : "", reads_a ? da : "");
        /* Spell out the story: preprocessing applied to the input and thrown away. */
        if (!reads_a || !is_hostside(A) || !(C->spec->flags & KM_F_WEIGHTED)) continue;
        kiln_error_append("\n  so ");
        for (int k = n - 1; k >= 0; k--) {
            const km_node *p = &m->nodes[chain[k]];
            kiln_error_append("%sthe %s '%s'", k == n - 1 ? "" : (k ? ", " : " and "), kind_word(p),
                              p->name);
        }
        kiln_error_append(" %s applied to the %s '%s' but %s never used: the %s%s '%s' reads the "
                          "raw %s '%s' directly",
                          n > 1 ? "are" : "is", A->spec->flags & KM_F_HOST ? "output of" : "input",
                          A->name, n > 1 ? "their output is" : "its output is",
                          is_first_weighted(m, c) ? "first " : "", kind_word(C), C->name,
                          A->spec->flags & KM_F_HOST ? "output of" : "input", A->name);
    }
    return KILN_INVALID_ARGUMENT;
}

static kiln_status lint_outputs(struct kiln_model *m) {
    if (!m->n_out)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: no output declared: add a line 'output(NAME)' naming the logits",
                          m->file);
    const char *cv = km_get_var(m, "classes");
    long classes = cv ? strtol(cv, NULL, 10) : 0;
    for (int o = 0; o < m->n_out; o++) {
        int j = kiln_model_find(m, m->outputs[o]);
        char where[512];
        km_where(m, m->output_line[o], where, sizeof where);
        if (j < 0) {
            const char *close = km_closest_name(m, m->outputs[o]);
            return kiln_error(KILN_INVALID_ARGUMENT, "%soutput '%s' is not a node%s%s%s", where,
                              m->outputs[o], close ? " (did you mean '" : "", close ? close : "",
                              close ? "'?)" : "");
        }
        km_node *nd = &m->nodes[j];
        nd->is_output = 1;
        if (nd->ndim != 2)
            km_warn(m, "%soutput '%s' has 4-D shape; the loss expects (N, classes)", where,
                    nd->name);
        else if (classes > 0 && nd->shape[1] != classes)
            km_warn(m, "%soutput '%s' has %lld features but classes=%ld", where, nd->name,
                    (long long)nd->shape[1], classes);
    }
    for (int i = 0; i < m->n; i++) {
        const km_node *nd = &m->nodes[i];
        if (nd->spec->id != KM_L_SOFTMAX || !nd->n_consumers) continue;
        return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                             "is read by other nodes; softmax is fused into the loss and may "
                             "only end the model (declare it as an output)");
    }
    return KILN_OK;
}

kiln_status kiln_model_finalize(kiln_model_t m, const kiln_model_config *cfg) {
    if (!m) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_finalize: model is NULL");
    kiln_model_config c = {0};
    if (cfg) c = *cfg;
    if (c.batch <= 0) c.batch = 1;
    if (c.batch > (1 << 24))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: batch %d is absurd", m->file, c.batch);
    m->finalized = 0;
    for (int i = 0; i < m->n_warn; i++) free(m->warnings[i]);
    m->n_warn = 0;
    const char *names[] = {"input_h", "input_w", "input_c", "classes"};
    int vals[] = {c.input_h, c.input_w, c.input_c, c.classes};
    for (int k = 0; k < 4; k++) {
        if (vals[k] < 0)
            return kiln_error(KILN_INVALID_ARGUMENT, "%s: %s = %d is negative", m->file, names[k],
                              vals[k]);
        if (vals[k] > 0) {
            char v[32];
            snprintf(v, sizeof v, "%d", vals[k]);
            kiln_status st = km_set_var(m, 0, names[k], v);
            if (st) return st;
        }
    }
    if (!m->n) return kiln_error(KILN_INVALID_ARGUMENT, "%s: the model has no nodes", m->file);
    kiln_status st = KILN_OK;
    for (int i = 0; i < m->n && !st; i++) {
        km_node *nd = &m->nodes[i];
        nd->n_consumers = 0;
        nd->is_output = 0;
        nd->shape[0] = c.batch;
        if (!(st = resolve_inputs(m, i)) && !(st = resolve_attrs(m, nd))) st = infer(m, nd);
        if (!st && nd->spec->id == KM_L_INPUT &&
            ((c.input_h && c.input_h != nd->shape[2]) || (c.input_w && c.input_w != nd->shape[3]) ||
             (c.input_c && c.input_c != nd->shape[1])))
            st = km_node_error(KILN_SHAPE, m, nd,
                               "the model fixes its input to shape=%s, but %dx%dx%d was asked "
                               "for: %s",
                               attr(nd, "shape")->text, c.input_h ? c.input_h : (int)nd->shape[2],
                               c.input_w ? c.input_w : (int)nd->shape[3],
                               c.input_c ? c.input_c : (int)nd->shape[1],
                               m->keras ? "build the Keras model for that input "
                                          "(keras.Input(shape=(H, W, C)); None for a free size)"
                                        : "write shape={input_h}x{input_w}x{input_c} to make the "
                                          "size a parameter");
    }
    if (st) return st;
    for (int i = 0; i < m->n; i++)
        for (int k = 0; k < m->nodes[i].n_in; k++) m->nodes[m->nodes[i].in[k]].n_consumers++;
    for (int i = 0; i < m->n; i++)
        if ((st = check_placement(m, &m->nodes[i]))) return st;
    if ((st = lint_outputs(m))) return st;
    for (int i = 0; i < m->n; i++) lint_input(m, i);
    char *live = calloc(m->n > 0 ? (size_t)m->n : 1, 1);
    if (!live) return kiln_error(KILN_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < m->n; i++) live[i] = (char)m->nodes[i].is_output;
    for (int i = m->n - 1; i >= 0; i--)
        if (live[i])
            for (int k = 0; k < m->nodes[i].n_in; k++) live[m->nodes[i].in[k]] = 1;
    st = lint_unused(m, live);
    free(live);
    if (st) return st;

    kiln_model_totals *t = &m->totals;
    memset(t, 0, sizeof *t);
    t->batch = c.batch;
    double act = 0;
    for (int i = 0; i < m->n; i++) {
        const km_node *nd = &m->nodes[i];
        t->params += nd->params;
        t->flops += nd->flops;
        int counted = !(nd->spec->flags & KM_F_VIEW) && !is_hostside(nd);
        /* Host-side outputs exist on the device only when uploaded to a device node. */
        for (int j = i + 1; j < m->n && !counted && is_hostside(nd); j++)
            for (int k = 0; k < m->nodes[j].n_in; k++)
                if (m->nodes[j].in[k] == i && !is_hostside(&m->nodes[j])) counted = 1;
        if (counted) act += numel(nd) * (double)kiln_dtype_size(nd->dtype) * (double)c.batch;
        if (nd->spec->id == KM_L_INPUT && !t->input_h) {
            t->input_h = (int)nd->shape[2];
            t->input_w = (int)nd->shape[3];
            t->input_c = (int)nd->shape[1];
        }
    }
    if (act > 9e18) return kiln_error(KILN_SHAPE, "%s: activations overflow", m->file);
    t->act_bytes = (int64_t)act;
    const char *cv = km_get_var(m, "classes");
    t->classes = cv ? atoi(cv) : 0;
    m->finalized = 1;
    return KILN_OK;
}
