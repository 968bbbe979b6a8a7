/* Batch normalization, softmax cross-entropy and accuracy cases: [N,C] and [N,C,H,W] inputs
   with one image (M = H*W), channel counts that match no work-group, chunked channels (large
   M), inputs far from zero (a mean of 100 against a spread of 1 defeats E[x^2] - E[x]^2),
   eps variants, inference with given statistics; losses with 1 to 1000 classes, label
   smoothing, logits of +-80, labels out of range; top-1/top-5 accuracy with ties. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- batch normalization ---- */

typedef struct bn_case {
    int ndim;
    int64_t shape[4]; /* N, C[, H, W] */
    float eps;
    float center; /* x is uniform in [center - 1, center + 1) */
} bn_case;

static kiln_status set_input(tctx *x, int idx, const float *data, size_t n) {
    return kiln_tensor_set(&x->in[idx], data, n * sizeof *data);
}

/* The output: a contiguous view inside a NaN-filled buffer with a few elements of margin on
   both sides (in[GUARD_IN], which no op reads). The harness compares the whole buffer, so a
   kernel that writes past its output fails even when the stray write stays inside memory the
   allocation owns. */
#define GUARD_IN (KILN_CASE_MAX_IN - 1)

static kiln_status guarded_output(const tcase *c, tctx *x, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    kiln_status st = kiln_case_matrix(c, x, GUARD_IN, 1, 1, (int)n, 1, 1);
    if (st) return st;
    x->out_buf = x->in[GUARD_IN].buffer;
    st = kiln_tensor_view(&x->out, &x->in[GUARD_IN], ndim, shape, NULL, 0);
    snprintf(x->out.name, sizeof x->out.name, "out");
    return st;
}

static kiln_status bn_x(const tcase *c, tctx *x, int idx) {
    const bn_case *b = (const void *)c->p;
    return kiln_case_input(c, x, idx, KILN_F32, b->ndim, b->shape, b->center - 1, b->center + 1);
}

/* A per-channel tensor: [C] (rows == 0) or [rows, C]. */
static kiln_status bn_vec(const tcase *c, tctx *x, int idx, int rows, float lo, float hi) {
    const bn_case *b = (const void *)c->p;
    int64_t shape[2] = {rows, b->shape[1]};
    return rows ? kiln_case_input(c, x, idx, KILN_F32, 2, shape, lo, hi)
                : kiln_case_input(c, x, idx, KILN_F32, 1, shape + 1, lo, hi);
}

/* in[idx] = the batch statistics of in[xidx], computed on the backend under test. */
static kiln_status bn_stats_of(const tcase *c, tctx *x, int idx, int xidx) {
    kiln_status st = bn_vec(c, x, idx, 2, 0, 1);
    return st ? st : kiln_batchnorm_stats(x->be, &x->in[xidx], &x->in[idx]);
}

static kiln_status bn_output_like_x(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    return guarded_output(c, x, b->ndim, b->shape);
}

static kiln_status bn_stats_build(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    int64_t shape[2] = {2, b->shape[1]};
    kiln_status st;
    if ((st = bn_x(c, x, 0)) || (st = guarded_output(c, x, 2, shape))) return st;
    kiln_case_node(x, KILN_OP_BATCHNORM_STATS, NULL, 0, 0x1);
    return KILN_OK;
}

/* Training forward: x in[0], its statistics in[1] (from BATCHNORM_STATS), gamma in[2],
   beta in[3]. */
static kiln_status bn_train_build(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    kiln_status st;
    if ((st = bn_x(c, x, 0)) || (st = bn_stats_of(c, x, 1, 0)) ||
        (st = bn_vec(c, x, 2, 0, 0.5f, 1.5f)) || (st = bn_vec(c, x, 3, 0, -0.5f, 0.5f)) ||
        (st = bn_output_like_x(c, x)))
        return st;
    kiln_bn_params p = {b->eps};
    kiln_case_node(x, KILN_OP_BATCHNORM, &p, sizeof p, 0xf);
    return KILN_OK;
}

/* Inference: running statistics given (means near the data, variances in [0.5, 1.5)). */
static kiln_status bn_infer_build(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    kiln_status st;
    if ((st = bn_x(c, x, 0)) || (st = bn_vec(c, x, 1, 2, 0, 1)) ||
        (st = bn_vec(c, x, 2, 0, 0.5f, 1.5f)) || (st = bn_vec(c, x, 3, 0, -0.5f, 0.5f)) ||
        (st = bn_output_like_x(c, x)))
        return st;
    size_t ch = (size_t)b->shape[1];
    float *stats = malloc(2 * ch * sizeof *stats);
    if (!stats) return KILN_OUT_OF_MEMORY;
    st = kiln_tensor_get(&x->in[1], stats, 2 * ch * sizeof *stats);
    for (size_t i = 0; i < ch; i++) {
        stats[i] = b->center + stats[i] - 0.5f;
        stats[ch + i] += 0.5f;
    }
    if (!st) st = set_input(x, 1, stats, 2 * ch);
    free(stats);
    if (st) return st;
    kiln_bn_params p = {b->eps};
    kiln_case_node(x, KILN_OP_BATCHNORM, &p, sizeof p, 0xf);
    return KILN_OK;
}

/* dy in[0], x in[1], stats in[2] -> dparams. */
static kiln_status bn_bwd_params_build(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    int64_t shape[2] = {2, b->shape[1]};
    kiln_status st;
    if ((st = kiln_case_input(c, x, 0, KILN_F32, b->ndim, b->shape, -1, 1)) ||
        (st = bn_x(c, x, 1)) || (st = bn_stats_of(c, x, 2, 1)) ||
        (st = guarded_output(c, x, 2, shape)))
        return st;
    kiln_bn_params p = {b->eps};
    kiln_case_node(x, KILN_OP_BATCHNORM_BWD_PARAMS, &p, sizeof p, 0x7);
    return KILN_OK;
}

/* dy in[0], x in[1], stats in[2], gamma in[3], dparams in[4] (from BATCHNORM_BWD_PARAMS). */
static kiln_status bn_bwd_build(const tcase *c, tctx *x) {
    const bn_case *b = (const void *)c->p;
    kiln_bn_params p = {b->eps};
    kiln_status st;
    if ((st = kiln_case_input(c, x, 0, KILN_F32, b->ndim, b->shape, -1, 1)) ||
        (st = bn_x(c, x, 1)) || (st = bn_stats_of(c, x, 2, 1)) ||
        (st = bn_vec(c, x, 3, 0, 0.5f, 1.5f)) || (st = bn_vec(c, x, 4, 2, 0, 1)) ||
        (st = kiln_batchnorm_bwd_params(x->be, &p, &x->in[0], &x->in[1], &x->in[2], &x->in[4])) ||
        (st = bn_output_like_x(c, x)))
        return st;
    kiln_case_node(x, KILN_OP_BATCHNORM_BWD, &p, sizeof p, 0x1f);
    return KILN_OK;
}

/* The training forward in double: the statistics are recomputed from the (perturbed) x, so
   finite differences see them move with x. in[1] (the backend's statistics) is ignored. */
static void bn_train_forward_f64(const tcase *c, double *const *in, double *out) {
    const bn_case *b = (const void *)c->p;
    size_t n = (size_t)b->shape[0], ch = (size_t)b->shape[1], hw = 1;
    if (b->ndim == 4) hw = (size_t)(b->shape[2] * b->shape[3]);
    const double *x = in[0], *gamma = in[2], *beta = in[3];
    for (size_t k = 0; k < ch; k++) {
        double mean = 0, var = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < hw; j++) mean += x[(i * ch + k) * hw + j];
        mean /= (double)(n * hw);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < hw; j++) {
                double d = x[(i * ch + k) * hw + j] - mean;
                var += d * d;
            }
        var /= (double)(n * hw);
        double scale = gamma[k] / sqrt(var + b->eps);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < hw; j++) {
                size_t o = (i * ch + k) * hw + j;
                out[o] = (x[o] - mean) * scale + beta[k];
            }
    }
}

/* BWD_PARAMS then BWD on the backend under test; (dgamma, dbeta) go to grads[2], grads[3]. */
static kiln_status bn_train_backward(const tcase *c, tctx *x, kiln_tensor *dout,
                                     kiln_tensor *grads) {
    const bn_case *b = (const void *)c->p;
    kiln_bn_params p = {b->eps};
    int64_t shape[2] = {2, b->shape[1]};
    size_t ch = (size_t)b->shape[1];
    kiln_tensor dparams;
    memset(&dparams, 0, sizeof dparams);
    float *host = malloc(2 * ch * sizeof *host);
    kiln_status st = host ? KILN_OK : KILN_OUT_OF_MEMORY;
    if (!st) st = kiln_tensor_alloc(&dparams, x->be, KILN_F32, 2, shape);
    /* Written from the host first only for Oclgrind: a freshly created buffer that reuses a
       released one's slot keeps part of its shadow "uninitialized" even after a kernel stores
       to it, and the next kernel's read is then reported (seen with a constant store). */
    if (!st) memset(host, 0, 2 * ch * sizeof *host);
    if (!st) st = kiln_tensor_set(&dparams, host, 2 * ch * sizeof *host);
    if (!st) st = kiln_batchnorm_bwd_params(x->be, &p, dout, &x->in[0], &x->in[1], &dparams);
    if (!st)
        st = kiln_batchnorm_bwd(x->be, &p, dout, &x->in[0], &x->in[1], &x->in[2], &dparams,
                                &grads[0]);
    if (!st) st = kiln_tensor_get(&dparams, host, 2 * ch * sizeof *host);
    if (!st) st = kiln_tensor_set(&grads[2], host, ch * sizeof *host);
    if (!st) st = kiln_tensor_set(&grads[3], host + ch, ch * sizeof *host);
    kiln_tensor_release(&dparams);
    free(host);
    return st;
}

/* Statistics must be far better than the default tolerance: a variance that lost its digits
   to a large mean would still pass an nmse dominated by that mean. */
static const op_kind bn_stats_kind = {.family = "norm", .build = bn_stats_build, .max_nmse = 1e-10};
static const op_kind bn_train_kind = {.family = "norm",
                                      .build = bn_train_build,
                                      .forward_f64 = bn_train_forward_f64,
                                      .backward = bn_train_backward,
                                      .grad_mask = 0xd};
/* Far from zero, finite differences need a step relative to the spread, not to |x|. */
static const op_kind bn_train_offset_kind = {.family = "norm",
                                             .build = bn_train_build,
                                             .forward_f64 = bn_train_forward_f64,
                                             .backward = bn_train_backward,
                                             .grad_mask = 0xd,
                                             .fd_eps = 1e-6};
static const op_kind bn_infer_kind = {.family = "norm", .build = bn_infer_build};
static const op_kind bn_bwd_params_kind = {.family = "norm", .build = bn_bwd_params_build};
static const op_kind bn_bwd_kind = {.family = "norm", .build = bn_bwd_build};

static void bn_shape_name(const bn_case *b, char *out, size_t n) {
    if (b->ndim == 4)
        snprintf(out, n, "x=[%lld,%lld,%lld,%lld]", (long long)b->shape[0], (long long)b->shape[1],
                 (long long)b->shape[2], (long long)b->shape[3]);
    else
        snprintf(out, n, "x=[%lld,%lld]", (long long)b->shape[0], (long long)b->shape[1]);
}

/* Statistics, the training forward (gradient-checked when small), both backward ops. */
static void add_bn(int ndim, int64_t n, int64_t c, int64_t h, int64_t w, float eps, float center) {
    bn_case b = {ndim, {n, c, h, w}, eps, center};
    int64_t elems = n * c * (ndim == 4 ? h * w : 1);
    int small = elems <= 512;
    char s[96];
    bn_shape_name(&b, s, sizeof s);
    kiln_add_case(&bn_stats_kind, &b, sizeof b, small, "batchnorm_stats %s center=%g", s,
                  (double)center);
    kiln_add_case(center != 0 ? &bn_train_offset_kind : &bn_train_kind, &b, sizeof b, small,
                  "batchnorm %s eps=%g center=%g train", s, (double)eps, (double)center);
    kiln_add_case(&bn_bwd_params_kind, &b, sizeof b, small,
                  "batchnorm_bwd_params %s eps=%g center=%g", s, (double)eps, (double)center);
    kiln_add_case(&bn_bwd_kind, &b, sizeof b, small, "batchnorm_bwd %s eps=%g center=%g", s,
                  (double)eps, (double)center);
}

/* Channels long enough to be split into chunks, marked small so that Oclgrind also checks
   the merge kernels (the reductions only; no gradient check at this size). */
static void add_bn_chunked(int64_t n, int64_t c, int64_t h, int64_t w, float center) {
    bn_case b = {4, {n, c, h, w}, 1e-5f, center};
    char s[96];
    bn_shape_name(&b, s, sizeof s);
    kiln_add_case(&bn_stats_kind, &b, sizeof b, 1, "batchnorm_stats %s center=%g chunked", s,
                  (double)center);
    kiln_add_case(&bn_bwd_params_kind, &b, sizeof b, 1,
                  "batchnorm_bwd_params %s eps=1e-05 center=%g chunked", s, (double)center);
}

static void add_bn_infer(int ndim, int64_t n, int64_t c, int64_t h, int64_t w, float eps,
                         float center) {
    bn_case b = {ndim, {n, c, h, w}, eps, center};
    char s[96];
    bn_shape_name(&b, s, sizeof s);
    int64_t elems = n * c * (ndim == 4 ? h * w : 1);
    kiln_add_case(&bn_infer_kind, &b, sizeof b, elems <= 512, "batchnorm %s eps=%g center=%g infer",
                  s, (double)eps, (double)center);
}

/* ---- softmax cross-entropy and accuracy ---- */

typedef struct xent_case {
    int n, k;
    float smoothing, range, scale;
    int bad_labels; /* rows 1 and 2 get labels k and -1 */
    int top_k;
    int integer; /* integer-valued logits in [0, range): many ties */
} xent_case;

static kiln_status xent_build(const tcase *c, tctx *x, kiln_op op) {
    const xent_case *q = (const void *)c->p;
    int64_t shape[2] = {q->n, q->k};
    kiln_status st;
    if ((st = kiln_case_input(c, x, 0, KILN_F32, 2, shape, q->integer ? 0 : -q->range, q->range)) ||
        (st = kiln_case_input(c, x, 1, KILN_I32, 1, shape, 0, (float)q->k)))
        return st;
    size_t nl = (size_t)q->n * (size_t)q->k;
    if (q->integer && nl) {
        float *l = malloc(nl * sizeof *l);
        if (!l) return KILN_OUT_OF_MEMORY;
        st = kiln_tensor_get(&x->in[0], l, nl * sizeof *l);
        for (size_t i = 0; i < nl; i++) l[i] = floorf(l[i]);
        if (!st) st = set_input(x, 0, l, nl);
        free(l);
        if (st) return st;
    }
    if (q->bad_labels && q->n >= 3) {
        int32_t *y = malloc((size_t)q->n * sizeof *y);
        if (!y) return KILN_OUT_OF_MEMORY;
        st = kiln_tensor_get(&x->in[1], y, (size_t)q->n * sizeof *y);
        y[1] = q->k;
        y[2] = -1;
        if (!st) st = kiln_tensor_set(&x->in[1], y, (size_t)q->n * sizeof *y);
        free(y);
        if (st) return st;
    }
    if ((st = guarded_output(c, x, op == KILN_OP_SOFTMAX_XENT_BWD ? 2 : 1, shape))) return st;
    if (op == KILN_OP_ACCURACY) {
        kiln_accuracy_params p = {q->top_k};
        kiln_case_node(x, op, &p, sizeof p, 0x3);
    } else {
        kiln_xent_params p = {q->smoothing, q->scale};
        kiln_case_node(x, op, &p, sizeof p, 0x3);
    }
    return KILN_OK;
}

static kiln_status xent_fwd_build(const tcase *c, tctx *x) {
    return xent_build(c, x, KILN_OP_SOFTMAX_XENT);
}

static kiln_status xent_bwd_build(const tcase *c, tctx *x) {
    return xent_build(c, x, KILN_OP_SOFTMAX_XENT_BWD);
}

static kiln_status accuracy_build(const tcase *c, tctx *x) {
    return xent_build(c, x, KILN_OP_ACCURACY);
}

static void xent_forward_f64(const tcase *c, double *const *in, double *out) {
    const xent_case *q = (const void *)c->p;
    double s = q->smoothing;
    for (int i = 0; i < q->n; i++) {
        const double *l = in[0] + (size_t)i * (size_t)q->k;
        int y = (int)in[1][i];
        double m = l[0], e = 0, loss = 0;
        for (int j = 1; j < q->k; j++) m = l[j] > m ? l[j] : m;
        for (int j = 0; j < q->k; j++) e += exp(l[j] - m);
        double lse = m + log(e);
        for (int j = 0; j < q->k; j++) loss -= (s / q->k + (j == y ? 1 - s : 0)) * (l[j] - lse);
        out[i] = loss;
    }
}

/* d sum(dout * loss) / dlogits: row i is dout[i] (softmax - t), i.e. SOFTMAX_XENT_BWD with
   scale dout[i] on that row's views, on the backend under test. */
static kiln_status xent_backward(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads) {
    const xent_case *q = (const void *)c->p;
    float *d = malloc((size_t)(q->n ? q->n : 1) * sizeof *d);
    if (!d) return KILN_OUT_OF_MEMORY;
    kiln_status st = kiln_tensor_get(dout, d, (size_t)q->n * sizeof *d);
    int64_t row[2] = {1, q->k}, one[1] = {1};
    size_t rb = (size_t)q->k * sizeof(float);
    for (int i = 0; i < q->n && !st; i++) {
        kiln_tensor l, y, g;
        kiln_xent_params p = {q->smoothing, d[i]};
        if (!(st = kiln_tensor_view(&l, &x->in[0], 2, row, NULL, (size_t)i * rb)) &&
            !(st = kiln_tensor_view(&y, &x->in[1], 1, one, NULL, (size_t)i * sizeof(int32_t))) &&
            !(st = kiln_tensor_view(&g, &grads[0], 2, row, NULL, (size_t)i * rb)))
            st = kiln_softmax_xent_bwd(x->be, &p, &l, &y, &g);
    }
    free(d);
    return st;
}

static const op_kind xent_kind = {.family = "norm",
                                  .build = xent_fwd_build,
                                  .forward_f64 = xent_forward_f64,
                                  .backward = xent_backward,
                                  .grad_mask = 0x1};
static const op_kind xent_nograd_kind = {.family = "norm", .build = xent_fwd_build};
/* A label out of range gives NaN losses, on every backend alike. */
static const op_kind xent_bad_kind = {
    .family = "norm", .build = xent_fwd_build, .allow_nonfinite = 1};
static const op_kind xent_bwd_kind = {.family = "norm", .build = xent_bwd_build};
static const op_kind accuracy_kind = {.family = "norm", .build = accuracy_build};

static void add_xent(int n, int k, float smoothing, float range, int bad) {
    xent_case q = {n, k, smoothing, range, 1.0f / (float)n, bad, 1, 0};
    int small = n * k <= 512;
    const char *tag = bad ? " bad-labels" : "";
    /* Peaked rows (+-80) are compared but not differentiated numerically. */
    const op_kind *fwd = bad ? &xent_bad_kind : range > 10 ? &xent_nograd_kind : &xent_kind;
    kiln_add_case(fwd, &q, sizeof q, small, "softmax_xent n=%d k=%d smoothing=%g range=%g%s", n, k,
                  (double)smoothing, (double)range, tag);
    kiln_add_case(&xent_bwd_kind, &q, sizeof q, small,
                  "softmax_xent_bwd n=%d k=%d smoothing=%g range=%g scale=1/n%s", n, k,
                  (double)smoothing, (double)range, tag);
}

static void add_accuracy(int n, int k, int top_k, float range, int bad) {
    xent_case q = {n, k, 0, range, 1, bad, top_k, 1};
    kiln_add_case(&accuracy_kind, &q, sizeof q, n * k <= 512,
                  "accuracy n=%d k=%d top_k=%d integer-logits<%g%s", n, k, top_k, (double)range,
                  bad ? " bad-labels" : "");
}

void kiln_cases_norm(void) {
    static const int channels[] = {1, 3, 13, 64}, spatial[] = {1, 7, 13, 32};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) add_bn(4, 1, channels[i], spatial[j], spatial[j], 1e-5f, 0);
    add_bn(4, 2, 3, 7, 7, 1e-3f, 0);
    add_bn(4, 3, 5, 17, 19, 0, 0);
    add_bn(4, 4, 13, 13, 13, 1e-5f, 0);
    /* More than one chunk per channel: the merge of partial statistics. */
    add_bn(4, 16, 4, 32, 32, 1e-5f, 0);
    add_bn(4, 32, 2, 64, 64, 1e-5f, 0);
    add_bn(2, 1, 13, 1, 1, 1e-5f, 0); /* M = 1: zero variance */
    add_bn(2, 2, 3, 1, 1, 1e-5f, 0);
    add_bn(2, 7, 64, 1, 1, 0.1f, 0);
    add_bn(2, 128, 13, 1, 1, 1e-5f, 0);
    add_bn(2, 1000, 3, 1, 1, 1e-5f, 0);
    add_bn(2, 20000, 1, 1, 1, 1e-5f, 0);
    /* Far from zero. */
    add_bn(4, 1, 3, 7, 7, 1e-5f, 100);
    add_bn(4, 1, 64, 13, 13, 1e-5f, 100);
    add_bn(4, 2, 13, 32, 32, 1e-5f, 100);
    add_bn(4, 32, 2, 64, 64, 1e-5f, 100);
    add_bn(2, 64, 5, 1, 1, 1e-5f, 100);
    add_bn(2, 1000, 3, 1, 1, 1e-3f, 100);
    add_bn_chunked(2, 1, 72, 72, 100);
    add_bn_infer(4, 1, 3, 7, 7, 1e-5f, 0);
    add_bn_infer(4, 4, 13, 13, 13, 1e-3f, 0);
    add_bn_infer(4, 2, 64, 32, 32, 1e-5f, 100);
    add_bn_infer(2, 128, 13, 1, 1, 1e-5f, 0);

    static const int classes[] = {1, 2, 10, 1000};
    for (int i = 0; i < 4; i++)
        for (int s = 0; s < 2; s++) {
            add_xent(classes[i] < 1000 ? 4 : 2, classes[i], s ? 0.1f : 0, 5, 0);
            add_xent(64, classes[i], s ? 0.1f : 0, 5, 0);
        }
    add_xent(3, 7, 0, 1, 0);
    add_xent(16, 10, 0, 80, 0);
    add_xent(16, 1000, 0.1f, 80, 0);
    add_xent(8, 10, 0, 5, 1);
    add_xent(8, 10, 0.1f, 5, 1);

    static const int acc_classes[] = {1, 5, 10, 1000};
    for (int i = 0; i < 4; i++) {
        add_accuracy(64, acc_classes[i], 1, 4, 0);
        add_accuracy(64, acc_classes[i], 5, 4, 0);
    }
    add_accuracy(16, 10, 1, 2, 0);
    add_accuracy(8, 10, 1, 3, 1);
    add_accuracy(8, 10, 5, 3, 1);
}
