/* Lowering a finalized model into the training graph and the eval graph, the deterministic
   parameter initialization, and the augmentation specs derived from the model's pipeline
   nodes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "../runtime/philox.h"
#include "model-impl.h"
#include "train-impl.h"

/* A model node's value while lowering: a device tensor, or (input, pipeline and
   rescale/normalize nodes) a pending affine map of the uploaded bytes, materialized as one
   U8_TO_F32 when a device node first reads it. */
typedef struct kt_val {
    kiln_tensor *t;
    int pending;
    float scale[4], bias[4];
} kt_val;

typedef struct lower_ctx {
    struct kiln_trainer *t;
    kt_graph *kg;
    int training;
    kt_val *val;
    int nparam, nbn; /* parameters / batch-norm layers created so far in this graph */
    kiln_status err;
} lower_ctx;

static const km_attr_val *attr(const km_node *nd, const char *key) {
    int k = km_attr_index(nd->spec, key);
    return k >= 0 && nd->av[k].set ? &nd->av[k] : NULL;
}

static kiln_status node_error(const struct kiln_model *m, const km_node *nd, const char *what) {
    char where[256];
    km_where(m, nd->line, where, sizeof where);
    return kiln_error(KILN_UNSUPPORTED, "%snode '%s' (%s): %s", where, nd->name, nd->spec->type,
                      what);
}

/* Records the first lowering error of this graph (the graph records its own). */
static void *lower_error(lower_ctx *c, const km_node *nd, const char *what) {
    if (!c->err) c->err = node_error(c->t->model, nd, what);
    return NULL;
}

/* The same parameter, in the same order, in both graphs: the flat buffers share a layout. */
static kiln_tensor *param(lower_ctx *c, const km_node *nd, const char *suffix, int ndim,
                          const int64_t *shape, int decay, const char *init, int64_t fan_in,
                          int64_t fan_out) {
    struct kiln_trainer *t = c->t;
    char name[KT_NAME];
    snprintf(name, sizeof name, "%s.%s", nd->name, suffix);
    kiln_tensor *p = kiln_graph_param(c->kg->g, name, ndim, shape);
    if (!p) return NULL;
    if (c->training) {
        kt_param *grown = realloc(t->params, sizeof *grown * (size_t)(t->nparams + 1));
        if (!grown) return lower_error(c, nd, "out of host memory");
        t->params = grown;
        kt_param *kp = &t->params[t->nparams++];
        memset(kp, 0, sizeof *kp);
        snprintf(kp->name, sizeof kp->name, "%s", name);
        kp->train = p;
        kp->decay = decay;
        kp->init = init;
        kp->fan_in = fan_in;
        kp->fan_out = fan_out;
    } else {
        if (c->nparam >= t->nparams)
            return lower_error(c, nd, "the eval graph has extra parameters");
        t->params[c->nparam].eval = p;
    }
    c->nparam++;
    return p;
}

static kiln_tensor *op(lower_ctx *c, const km_node *nd, kiln_op o, const void *p, size_t size,
                       int nsrc, kiln_tensor *const *src, int ndim, const int64_t *shape) {
    return kiln_graph_op(c->kg->g, nd->name, o, p, size, nsrc, src, KILN_F32, ndim, shape);
}

/* The device value of node j. */
static kiln_tensor *value(lower_ctx *c, int j) {
    struct kiln_model *m = c->t->model;
    kt_val *v = &c->val[j];
    if (!v->pending || v->t) return v->t;
    const km_node *nd = &m->nodes[j];
    kt_graph *kg = c->kg;
    int64_t N = c->t->batch, C = nd->shape[1], H = nd->shape[2], W = nd->shape[3];
    if (!kg->images) {
        int64_t is[4] = {N, H, W, C}, ls[1] = {N};
        kg->images = kiln_graph_input(kg->g, "images", KILN_U8, 4, is);
        kg->labels = kiln_graph_input(kg->g, "labels", KILN_I32, 1, ls);
        if (!kg->images) return NULL;
        c->t->in_h = (int)H, c->t->in_w = (int)W, c->t->in_c = (int)C;
    } else if (kg->images->shape[1] != H || kg->images->shape[2] != W ||
               kg->images->shape[3] != C) {
        return lower_error(c, nd,
                           "the device reads pipeline outputs of two different sizes; the data "
                           "pipeline produces one image size");
    }
    kiln_convert_params p;
    memcpy(p.scale, v->scale, sizeof p.scale);
    memcpy(p.bias, v->bias, sizeof p.bias);
    int64_t os[4] = {N, C, H, W};
    v->t = kiln_graph_op(kg->g, nd->name, KILN_OP_U8_TO_F32, &p, sizeof p, 1, &kg->images, KILN_F32,
                         4, os);
    return v->t;
}

/* TensorFlow's "same" (the model's shape inference uses the same rule). */
static void same_pad(int64_t in, int64_t k, int64_t s, int64_t d, int32_t *lo, int32_t *hi) {
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
    if (total < 0) total = 0;
    *lo = (int32_t)(total / 2);
    *hi = (int32_t)(total - total / 2);
}

void kt_pads(const km_node *nd, const km_node *x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
             int64_t dh, int64_t dw, int32_t p[4]) {
    const km_attr_val *pv = attr(nd, "padding");
    if (pv && pv->e) {
        same_pad(x->shape[2], kh, sh, dh, &p[0], &p[1]);
        same_pad(x->shape[3], kw, sw, dw, &p[2], &p[3]);
    } else {
        for (int k = 0; k < 4; k++) p[k] = pv ? (int32_t)pv->i[k] : 0;
    }
}

/* One device node: i its index, xn its first input and x that input's value (NULL for none). */
typedef kiln_tensor *(*lower_fn)(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                 kiln_tensor *x);

static kiln_tensor *lower_conv(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                               kiln_tensor *x) {
    const km_attr_val *kv = attr(nd, "kernel"), *sv = attr(nd, "stride"),
                      *dv = attr(nd, "dilation");
    int64_t O = attr(nd, "filters")->i[0], g = attr(nd, "groups")->i[0];
    int64_t C = xn->shape[1], kh = kv->i[0], kw = kv->i[1];
    kiln_conv2d_params p = {(int32_t)sv->i[0], (int32_t)sv->i[1], 0,         0, 0, 0,
                            (int32_t)dv->i[0], (int32_t)dv->i[1], (int32_t)g};
    int32_t pd[4];
    kt_pads(nd, xn, kh, kw, sv->i[0], sv->i[1], dv->i[0], dv->i[1], pd);
    p.pad_t = pd[0], p.pad_b = pd[1], p.pad_l = pd[2], p.pad_r = pd[3];
    int64_t ws[4] = {O, C / g, kh, kw}, bs[1] = {O};
    const char *init = attr(nd, "init")->text;
    kiln_tensor *w = param(c, nd, "weight", 4, ws, 1, init, C / g * kh * kw, O / g * kh * kw);
    kiln_tensor *b = attr(nd, "bias")->e ? param(c, nd, "bias", 1, bs, 0, "zeros", 0, 0) : NULL;
    kiln_tensor *src[3] = {x, w, b};
    return op(c, nd, KILN_OP_CONV2D, &p, sizeof p, 3, src, 4, nd->shape);
}

static kiln_tensor *lower_dense(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                kiln_tensor *x) {
    if (x->ndim != 2) {
        return lower_error(c, nd, "dense needs a (N, F) input: flatten first");
    }
    int64_t F = xn->shape[1], U = attr(nd, "units")->i[0];
    int64_t ws[2] = {U, F}, bs[1] = {U};
    kiln_tensor *w = param(c, nd, "weight", 2, ws, 1, attr(nd, "init")->text, F, U);
    kiln_tensor *b = attr(nd, "bias")->e ? param(c, nd, "bias", 1, bs, 0, "zeros", 0, 0) : NULL;
    kiln_gemm_params gp = {0, 1, 1.0f, 0.0f};
    kiln_tensor *src[2] = {x, w};
    kiln_tensor *y = op(c, nd, KILN_OP_GEMM, &gp, sizeof gp, 2, src, 2, nd->shape);
    if (!b || !y) return y;
    kiln_tensor *bsrc[2] = {y, b};
    return op(c, nd, KILN_OP_BIAS_ADD, NULL, 0, 2, bsrc, 2, nd->shape);
}

/* maxpool, avgpool */
static kiln_tensor *lower_pool(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                               kiln_tensor *x) {
    int avg = nd->spec->id == KM_L_AVGPOOL;
    const km_attr_val *kv = attr(nd, "pool"), *sv = attr(nd, "stride");
    int64_t kh = kv->i[0], kw = kv->i[1], sh = sv ? sv->i[0] : kh, sw = sv ? sv->i[1] : kw;
    kiln_pool2d_params p = {avg ? KILN_POOL_AVG : KILN_POOL_MAX,
                            (int32_t)kh,
                            (int32_t)kw,
                            (int32_t)sh,
                            (int32_t)sw,
                            0,
                            0,
                            0,
                            0,
                            attr(nd, "ceil")->e,
                            avg ? attr(nd, "count_include_pad")->e : 0};
    int32_t pd[4];
    kt_pads(nd, xn, kh, kw, sh, sw, 1, 1, pd);
    p.pad_t = pd[0], p.pad_b = pd[1], p.pad_l = pd[2], p.pad_r = pd[3];
    return op(c, nd, KILN_OP_POOL2D, &p, sizeof p, 1, &x, 4, nd->shape);
}

static kiln_tensor *lower_bn(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                             kiln_tensor *x) {
    struct kiln_trainer *t = c->t;
    int64_t C = x->shape[1], cs[1] = {C}, ss[2] = {2, C};
    kiln_tensor *gamma = param(c, nd, "weight", 1, cs, 0, "ones", 0, 0);
    kiln_tensor *beta = param(c, nd, "bias", 1, cs, 0, "zeros", 0, 0);
    kiln_bn_params p = {(float)attr(nd, "eps")->f[0]};
    kiln_tensor *stats;
    if (c->training) {
        stats = kiln_graph_op(c->kg->g, nd->name, KILN_OP_BATCHNORM_STATS, NULL, 0, 1, &x, KILN_F32,
                              2, ss);
        kt_bn *grown = realloc(t->bns, sizeof *grown * (size_t)(t->nbns + 1));
        if (!grown) return lower_error(c, nd, "out of host memory");
        if (!stats) return NULL;
        t->bns = grown;
        kt_bn *b = &t->bns[t->nbns++];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "%s.running_stats", nd->name);
        b->batch_stats = stats;
        kiln_graph_keep(c->kg->g, stats); /* read by the running-statistics update */
        b->momentum = (float)attr(nd, "momentum")->f[0];
        b->m = kiln_tensor_nelements(x) / C;
    } else {
        char name[KT_NAME];
        snprintf(name, sizeof name, "%s.running", nd->name);
        stats = kiln_graph_input(c->kg->g, name, KILN_F32, 2, ss);
        if (!stats) return NULL;
        if (c->nbn >= t->nbns) return lower_error(c, nd, "the eval graph has extra batch norms");
        t->bns[c->nbn].running = stats;
    }
    c->nbn++;
    kiln_tensor *src[4] = {x, stats, gamma, beta};
    return kiln_graph_op(c->kg->g, nd->name, KILN_OP_BATCHNORM, &p, sizeof p, 4, src, KILN_F32,
                         x->ndim, x->shape);
}

static kiln_tensor *lower_act(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                              kiln_tensor *x) {
    static const kiln_act_type acts[KM_L_COUNT] = {
        [KM_L_RELU] = KILN_ACT_RELU, [KM_L_LEAKY_RELU] = KILN_ACT_LEAKY_RELU,
        [KM_L_ELU] = KILN_ACT_ELU,   [KM_L_SIGMOID] = KILN_ACT_SIGMOID,
        [KM_L_TANH] = KILN_ACT_TANH, [KM_L_GELU] = KILN_ACT_GELU};
    const km_attr_val *a = attr(nd, "alpha");
    kiln_act_params p = {acts[nd->spec->id], a ? (float)a->f[0] : 0.0f};
    return op(c, nd, KILN_OP_ACT, &p, sizeof p, 1, &x, x->ndim, x->shape);
}

/* Folds rescale/normalize into the pending affine map of its input. */
static kiln_status fold_preproc(lower_ctx *c, const km_node *nd, kt_val *v) {
    int C = (int)nd->shape[1];
    if (nd->spec->id == KM_L_RESCALE) {
        float s = (float)attr(nd, "scale")->f[0], o = (float)attr(nd, "offset")->f[0];
        for (int k = 0; k < 4; k++) v->scale[k] *= s, v->bias[k] = v->bias[k] * s + o;
        return KILN_OK;
    }
    const km_attr_val *mv = attr(nd, "mean"), *sv = attr(nd, "std");
    if ((mv->n != 1 && mv->n != C) || (sv->n != 1 && sv->n != C))
        return node_error(c->t->model, nd, "mean and std need 1 value or one per channel");
    for (int k = 0; k < C && k < 4; k++) {
        float mu = (float)mv->f[mv->n == 1 ? 0 : k], sd = (float)sv->f[sv->n == 1 ? 0 : k];
        v->scale[k] /= sd;
        v->bias[k] = (v->bias[k] - mu) / sd;
    }
    return KILN_OK;
}

static kiln_tensor *lower_global_avg_pool(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                          kiln_tensor *x) {
    kiln_pool2d_params p = {.type = KILN_POOL_AVG,
                            .kernel_h = (int32_t)x->shape[2],
                            .kernel_w = (int32_t)x->shape[3],
                            .stride_h = 1,
                            .stride_w = 1,
                            .count_include_pad = 1};
    int64_t ps[4] = {x->shape[0], x->shape[1], 1, 1}, fs[2] = {x->shape[0], x->shape[1]};
    kiln_tensor *y = op(c, nd, KILN_OP_POOL2D, &p, sizeof p, 1, &x, 4, ps);
    return y ? kiln_graph_reshape(c->kg->g, y, 2, fs) : NULL;
}

static kiln_tensor *lower_lrn(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                              kiln_tensor *x) {
    kiln_lrn_params p = {(int32_t)attr(nd, "size")->i[0], (float)attr(nd, "alpha")->f[0],
                         (float)attr(nd, "beta")->f[0], (float)attr(nd, "k")->f[0]};
    return op(c, nd, KILN_OP_LRN, &p, sizeof p, 1, &x, 4, x->shape);
}

static kiln_tensor *lower_dropout(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                  kiln_tensor *x) {
    float rate = (float)attr(nd, "rate")->f[0];
    if (!c->training || rate <= 0) return x;
    /* Each dropout layer its own key, derived from the seed and the node's position. */
    uint64_t key = c->t->o.seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1;
    kiln_dropout_params p = {rate,
                             (uint32_t)fmin((double)rate * 4294967296.0, 4294967295.0),
                             (uint32_t)key,
                             (uint32_t)(key >> 32),
                             0,
                             0};
    return op(c, nd, KILN_OP_DROPOUT, &p, sizeof p, 1, &x, x->ndim, x->shape);
}

/* add, concat */
static kiln_tensor *lower_merge(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                kiln_tensor *x) {
    kiln_tensor *src[KILN_MODEL_MAX_INPUTS] = {0};
    for (int k = 0; k < nd->n_in; k++)
        if (!(src[k] = value(c, nd->in[k]))) return NULL;
    if (nd->spec->id == KM_L_CONCAT) {
        kiln_concat_params p = {1};
        return op(c, nd, KILN_OP_CONCAT, &p, sizeof p, nd->n_in, src, nd->ndim, nd->shape);
    }
    kiln_tensor *y = src[0];
    for (int k = 1; k < nd->n_in && y; k++) {
        kiln_tensor *pair[2] = {y, src[k]};
        y = op(c, nd, KILN_OP_ADD, NULL, 0, 2, pair, x->ndim, x->shape);
    }
    return y;
}

/* flatten, reshape */
static kiln_tensor *lower_view(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                               kiln_tensor *x) {
    return kiln_graph_reshape(c->kg->g, x, nd->ndim, nd->shape);
}

/* fused with the loss */
static kiln_tensor *lower_softmax(lower_ctx *c, int i, const km_node *nd, const km_node *xn,
                                  kiln_tensor *x) {
    return x;
}

/* The input, pipeline and rescale/normalize nodes have none: lower_graph folds them into the
   pending upload. */
static const lower_fn lowerers[KM_L_COUNT] = {
    [KM_L_CONV2D] = lower_conv,
    [KM_L_DENSE] = lower_dense,
    [KM_L_RELU] = lower_act,
    [KM_L_LEAKY_RELU] = lower_act,
    [KM_L_ELU] = lower_act,
    [KM_L_SIGMOID] = lower_act,
    [KM_L_TANH] = lower_act,
    [KM_L_GELU] = lower_act,
    [KM_L_MAXPOOL] = lower_pool,
    [KM_L_AVGPOOL] = lower_pool,
    [KM_L_GLOBAL_AVG_POOL] = lower_global_avg_pool,
    [KM_L_LRN] = lower_lrn,
    [KM_L_BATCHNORM] = lower_bn,
    [KM_L_DROPOUT] = lower_dropout,
    [KM_L_ADD] = lower_merge,
    [KM_L_CONCAT] = lower_merge,
    [KM_L_FLATTEN] = lower_view,
    [KM_L_RESHAPE] = lower_view,
    [KM_L_SOFTMAX] = lower_softmax,
};

int kt_layer_lowers(int id) {
    return id >= 0 && id < KM_L_COUNT && lowerers[id];
}

static kiln_tensor *lower_node(lower_ctx *c, int i) {
    struct kiln_model *m = c->t->model;
    const km_node *nd = &m->nodes[i];
    const km_node *xn = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    kiln_tensor *x = xn ? value(c, nd->in[0]) : NULL;
    if (xn && !x) return NULL;
    if (!kt_layer_lowers((int)nd->spec->id))
        return lower_error(c, nd, "no lowering for this node type");
    return lowerers[nd->spec->id](c, i, nd, xn, x);
}

static kiln_status lower_graph(struct kiln_trainer *t, kt_graph *kg, int training) {
    struct kiln_model *m = t->model;
    kiln_status st = kiln_graph_init(&kg->g);
    if (st) return st;
    lower_ctx c = {t, kg, training, calloc((size_t)m->n, sizeof(kt_val)), 0, 0, KILN_OK};
    if (!c.val) return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
    int out = -1;
    for (int i = 0; i < m->n; i++) {
        const km_node *nd = &m->nodes[i];
        kt_val *v = &c.val[i];
        if (nd->is_output && out < 0) out = i;
        if (nd->spec->id == KM_L_INPUT) {
            v->pending = 1;
            for (int k = 0; k < 4; k++) v->scale[k] = 1.0f;
            continue;
        }
        if (nd->spec->flags & (KM_F_HOST | KM_F_PREPROC)) {
            const kt_val *in = &c.val[nd->in[0]];
            if (!in->pending || in->t) {
                st = node_error(m, nd, "pipeline and rescale/normalize nodes must read the input");
                break;
            }
            *v = *in;
            if ((nd->spec->flags & KM_F_PREPROC) && (st = fold_preproc(&c, nd, v))) break;
            continue;
        }
        const kiln_tensor *first_before = kg->first_in;
        v->t = lower_node(&c, i);
        if (!v->t) {
            /* Ours, else the graph's recorded error (alloc returns it before allocating). */
            st = c.err ? c.err : kiln_graph_alloc(kg->g, t->be);
            if (!st) st = kiln_error(KILN_INTERNAL, "trainer: lowering node '%s' failed", nd->name);
            break;
        }
        if (!first_before && (nd->spec->flags & KM_F_WEIGHTED)) kg->first_in = value(&c, nd->in[0]);
    }
    if (!st && out < 0) st = kiln_error(KILN_INVALID_ARGUMENT, "trainer: the model has no output");
    kiln_tensor *logits = st ? NULL : value(&c, out);
    free(c.val);
    if (st) return st;
    if (c.err) return c.err;
    if (!logits || logits->ndim != 2 || logits->shape[1] != t->classes)
        return kiln_error(KILN_SHAPE, "trainer: the output '%s' must be (N, %d) logits",
                          m->nodes[out].name, t->classes);
    if (!kg->images)
        return kiln_error(KILN_INVALID_ARGUMENT, "trainer: no device node reads the model's input");
    kiln_xent_params xp = {t->o.label_smoothing, 1.0f};
    kiln_tensor *src[2] = {logits, kg->labels};
    int64_t ls[1] = {t->batch};
    kg->loss =
        kiln_graph_op(kg->g, "loss", KILN_OP_SOFTMAX_XENT, &xp, sizeof xp, 2, src, KILN_F32, 1, ls);
    kiln_accuracy_params a1 = {1}, a5 = {5};
    kg->top1 =
        kiln_graph_op(kg->g, "top1", KILN_OP_ACCURACY, &a1, sizeof a1, 2, src, KILN_F32, 1, ls);
    kg->top5 =
        kiln_graph_op(kg->g, "top5", KILN_OP_ACCURACY, &a5, sizeof a5, 2, src, KILN_F32, 1, ls);
    kiln_graph_keep(kg->g, kg->loss);
    kiln_graph_keep(kg->g, kg->top1);
    kiln_graph_keep(kg->g, kg->top5);
    kg->logits = logits;
    if (!training) kiln_graph_keep(kg->g, logits->view_src ? logits->view_src : logits);
    if (training && kg->first_in) kiln_graph_keep(kg->g, kg->first_in);
    if (training && (st = kiln_graph_backward(kg->g, kg->loss, 1.0f))) return st;
    return kiln_graph_alloc(kg->g, t->be);
}

kiln_status kt_lower(struct kiln_trainer *t) {
    kiln_status st = lower_graph(t, &t->tg, 1);
    if (!st) st = lower_graph(t, &t->eg, 0);
    if (st) return st;
    kiln_tensor *a = kiln_graph_params_flat(t->tg.g), *b = kiln_graph_params_flat(t->eg.g);
    if (!a || !b || kiln_tensor_nelements(a) != kiln_tensor_nelements(b))
        return kiln_error(KILN_INTERNAL, "trainer: the eval graph's parameters differ");
    /* Running statistics start at mean 0, variance 1. */
    for (int k = 0; k < t->nbns && !st; k++) {
        int64_t C = t->bns[k].running->shape[1];
        float *h = malloc(sizeof(float) * 2 * (size_t)C);
        if (!h) return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
        for (int64_t j = 0; j < 2 * C; j++) h[j] = j < C ? 0.0f : 1.0f;
        st = kiln_tensor_set(t->bns[k].running, h, sizeof(float) * 2 * (size_t)C);
        free(h);
    }
    return st;
}

/* ---- initialization ---- */

/* Uniform in (0, 1) from Philox words, never 0 (Box-Muller takes its log). */
static double unit(uint32_t w) {
    return ((double)w + 0.5) / 4294967296.0;
}

kiln_status kt_init_params(struct kiln_trainer *t) {
    kiln_status st = KILN_OK;
    for (int k = 0; k < t->nparams && !st; k++) {
        kt_param *p = &t->params[k];
        size_t n = (size_t)kiln_tensor_nelements(p->train);
        float *h = malloc(n * sizeof *h);
        if (!h) return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
        int normal = !strcmp(p->init, "he") || !strcmp(p->init, "lecun");
        double sd = !strcmp(p->init, "he")      ? sqrt(2.0 / (double)p->fan_in)
                    : !strcmp(p->init, "lecun") ? sqrt(1.0 / (double)p->fan_in)
                                                : 0;
        double limit =
            !strcmp(p->init, "glorot") ? sqrt(6.0 / (double)(p->fan_in + p->fan_out)) : 0;
        uint32_t key0 = (uint32_t)t->o.seed, key1 = (uint32_t)(t->o.seed >> 32) ^ 0x5eedu;
        for (size_t j = 0; j < n; j += 4) {
            uint32_t ctr[4] = {(uint32_t)(j / 4), (uint32_t)((uint64_t)(j / 4) >> 32), (uint32_t)k,
                               0x1417u},
                     w[4];
            kiln_philox4x32_10(ctr, key0, key1, w);
            double r0 = sqrt(-2.0 * log(unit(w[0]))), r1 = sqrt(-2.0 * log(unit(w[2])));
            double z[4] = {r0 * cos(2 * M_PI * unit(w[1])), r0 * sin(2 * M_PI * unit(w[1])),
                           r1 * cos(2 * M_PI * unit(w[3])), r1 * sin(2 * M_PI * unit(w[3]))};
            for (size_t q = 0; q < 4 && j + q < n; q++) {
                float v;
                if (normal)
                    v = (float)(sd * z[q]);
                else if (limit > 0)
                    v = (float)(limit * (2 * unit(w[q]) - 1));
                else
                    v = !strcmp(p->init, "ones") ? 1.0f : 0.0f;
                h[j + q] = v;
            }
        }
        st = kiln_tensor_set(p->train, h, n * sizeof *h);
        free(h);
    }
    return st;
}

/* ---- augmentation specs ---- */

static void append(char *buf, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void append(char *buf, size_t n, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len && len + 1 < n) buf[len++] = ',', buf[len] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

/* The eval transform of a training spec: fixed-size geometry becomes deterministic (rrc:S ->
   resize:S,center:S; crop:WxH -> center:WxH), pixel tokens are dropped. */
static char *eval_spec(const char *spec) {
    size_t n = strlen(spec) * 2 + 64;
    char *out = calloc(1, n), *copy = malloc(strlen(spec) + 1), *save = NULL;
    if (!out || !copy) {
        free(out);
        free(copy);
        return NULL;
    }
    strcpy(copy, spec);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        const char *arg = strchr(tok, ':');
        size_t len = strlen(out);
        char *dst = out + len + (len ? 1 : 0);
        if (len) out[len] = ',';
        if (!strncmp(tok, "rrc:", 4)) {
            int s = atoi(tok + 4);
            snprintf(dst, n - (size_t)(dst - out), "resize:%d,center:%d", s, s);
        } else if (!strncmp(tok, "crop:", 5)) {
            snprintf(dst, n - (size_t)(dst - out), "center:%s", arg + 1);
        } else if (!strncmp(tok, "resize:", 7) || !strncmp(tok, "size:", 5) ||
                   !strncmp(tok, "center:", 7)) {
            snprintf(dst, n - (size_t)(dst - out), "%s", tok);
        } else {
            out[len] = '\0';
        }
    }
    free(copy);
    return out;
}

kiln_status kt_augment_specs(struct kiln_trainer *t) {
    char spec[1024] = "";
    struct kiln_model *m = t->model;
    if (t->o.augment) {
        snprintf(spec, sizeof spec, "%s", strcmp(t->o.augment, "none") ? t->o.augment : "");
    } else {
        for (int i = 0; i < m->n; i++) {
            const km_node *nd = &m->nodes[i];
            km_layer_id ty = nd->spec->id;
            if (!(nd->spec->flags & KM_F_HOST)) continue;
            const km_attr_val *sz = attr(nd, "size");
            if (ty == KM_L_RANDOM_FLIP) {
                int e = attr(nd, "mode")->e;
                append(spec, sizeof spec, "%s", e == 0 ? "flip:h" : e == 1 ? "flip:v" : "flip:hv");
            } else if (ty == KM_L_RANDOM_CROP) {
                if (attr(nd, "pad_mode")->e != 0)
                    return node_error(m, nd, "only pad_mode=zero is supported by the pipeline");
                if (attr(nd, "padding")->i[0] > 0)
                    append(spec, sizeof spec, "padcrop:%lld", (long long)attr(nd, "padding")->i[0]);
                if (sz)
                    append(spec, sizeof spec, "crop:%lldx%lld", (long long)sz->i[1],
                           (long long)sz->i[0]);
            } else if (ty == KM_L_RANDOM_RESIZED_CROP) {
                const km_attr_val *sc = attr(nd, "scale"), *ra = attr(nd, "ratio");
                if (sz->i[0] != sz->i[1])
                    return node_error(m, nd, "the pipeline's random resized crop is square");
                append(spec, sizeof spec, "rrc:%lld:%g-%g:%g-%g", (long long)sz->i[0], sc->f[0],
                       sc->f[1], ra->f[0], ra->f[1]);
            } else if (ty == KM_L_RANDOM_ROTATION) {
                append(spec, sizeof spec, "rotate:%g", attr(nd, "degrees")->f[0] / 360.0);
            } else if (ty == KM_L_RANDOM_TRANSLATION) {
                append(spec, sizeof spec, "translate:%g", attr(nd, "fraction")->f[0]);
            } else if (ty == KM_L_RANDOM_ZOOM) {
                return node_error(m, nd,
                                  "the data pipeline has no zoom yet: give --augment without it "
                                  "(e.g. --augment flip:h,rotate:0.1) or remove the zoom");
            } else if (ty == KM_L_RANDOM_BRIGHTNESS) {
                append(spec, sizeof spec, "jitter:%g:0:0", attr(nd, "delta")->f[0]);
            } else if (ty == KM_L_RANDOM_CONTRAST) {
                append(spec, sizeof spec, "jitter:0:%g:0", attr(nd, "factor")->f[0]);
            } else if (ty == KM_L_RANDOM_SATURATION) {
                append(spec, sizeof spec, "jitter:0:0:%g", attr(nd, "factor")->f[0]);
            } else if (ty == KM_L_RANDOM_ERASING) {
                append(spec, sizeof spec, "erase:%g", attr(nd, "p")->f[0]);
            } else if (ty == KM_L_CENTER_CROP) {
                append(spec, sizeof spec, "center:%.0fx%.0f", (double)sz->i[1], (double)sz->i[0]);
            } else if (ty == KM_L_RESIZE) {
                append(spec, sizeof spec, "size:%.0fx%.0f", (double)sz->i[1], (double)sz->i[0]);
            }
        }
    }
    t->augment_train = malloc(strlen(spec) + 1);
    t->augment_eval = eval_spec(spec);
    if (!t->augment_train || !t->augment_eval)
        return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
    strcpy(t->augment_train, spec);
    return KILN_OK;
}

/* Peak device memory of the two graphs and the optimizer state. */
size_t kiln_trainer_device_bytes(kiln_trainer_t t) {
    kiln_graph_memory a, b;
    kiln_graph_get_memory(t->tg.g, &a);
    kiln_graph_get_memory(t->eg.g, &b);
    size_t state =
        kiln_tensor_extent(&t->opt_a) + (t->opt_b.buffer ? kiln_tensor_extent(&t->opt_b) : 0);
    return a.params + a.grads + a.inputs + a.activations + b.params + b.inputs + b.activations +
           state;
}
