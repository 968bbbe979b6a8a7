/* Pooling, LRN and copy cases: max/avg pooling over batch, channel and spatial sizes, AlexNet's
   overlapping 3x3/2, padded and asymmetric windows, ceil mode, count_include_pad, global
   average pooling, and ties (integer-valued inputs, where every backend must route the
   gradient to the first maximum); LRN with AlexNet's parameters and with windows wider than
   the channel count; strided copies (transposes, slices, i32/u8, strided destinations) and
   concatenations along every axis. Pooling (avg, and max on distinct values) and LRN are
   gradient-checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-cases.h"
#include "harness.h"

/* ---- inputs ---- */

enum { FILL_RANDOM, FILL_DISTINCT, FILL_TIES };
static const char *const fill_names[] = {"", " distinct", " ties"};

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* in[idx] as an f32 tensor in [lo, hi); FILL_DISTINCT: a shuffled evenly spaced grid (no two
   values closer than 2/n, so finite differences never swap a maximum); FILL_TIES: integers
   0..2, so most windows hold repeated maxima. */
static kiln_status f32_input(const tcase *c, tctx *x, int idx, int ndim, const int64_t *shape,
                             float lo, float hi, int fill) {
    kiln_status st = kiln_case_input(c, x, idx, KILN_F32, ndim, shape, lo, hi);
    if (st || fill == FILL_RANDOM) return st;
    size_t n = (size_t)kiln_tensor_nelements(&x->in[idx]);
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return KILN_OUT_OF_MEMORY;
    uint64_t s = kiln_case_seed(c, idx) | 1;
    for (size_t i = 0; i < n; i++)
        v[i] = fill == FILL_TIES ? (float)(next_rand(&s) % 3)
                                 : (float)(-1.0 + 2.0 * ((double)i + 0.5) / (double)n);
    if (fill == FILL_DISTINCT)
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(next_rand(&s) % i);
            float t = v[i - 1];
            v[i - 1] = v[j];
            v[j] = t;
        }
    st = kiln_tensor_set(&x->in[idx], v, n * sizeof *v);
    free(v);
    return st;
}

/* ---- pooling ---- */

typedef struct pool_case {
    int n, c, h, w, fill;
    kiln_pool2d_params p;
} pool_case;

static void pool_out_shape(const pool_case *pc, int64_t out[4]) {
    const kiln_pool2d_params *p = &pc->p;
    out[0] = pc->n;
    out[1] = pc->c;
    out[2] =
        kiln_pool2d_out_size(pc->h, p->kernel_h, p->stride_h, p->pad_t, p->pad_b, p->ceil_mode);
    out[3] =
        kiln_pool2d_out_size(pc->w, p->kernel_w, p->stride_w, p->pad_l, p->pad_r, p->ceil_mode);
}

static kiln_status pool_build(const tcase *c, tctx *x) {
    const pool_case *pc = (const void *)c->p;
    int64_t in[4] = {pc->n, pc->c, pc->h, pc->w}, out[4];
    pool_out_shape(pc, out);
    kiln_status st;
    if ((st = f32_input(c, x, 0, 4, in, -1, 1, pc->fill)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, out, 0)))
        return st;
    kiln_case_node(x, KILN_OP_POOL2D, &pc->p, sizeof pc->p, 0x1);
    return KILN_OK;
}

static kiln_status pool_bwd_build(const tcase *c, tctx *x) {
    const pool_case *pc = (const void *)c->p;
    int64_t in[4] = {pc->n, pc->c, pc->h, pc->w}, out[4];
    pool_out_shape(pc, out);
    kiln_status st;
    if ((st = f32_input(c, x, 0, 4, out, -1, 1, FILL_RANDOM)) ||
        (st = f32_input(c, x, 1, 4, in, -1, 1, pc->fill)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, in, 0)))
        return st;
    kiln_case_node(x, KILN_OP_POOL2D_BWD, &pc->p, sizeof pc->p, 0x3);
    return KILN_OK;
}

/* Written from the definition in ops.h, independently of the backends. */
static void pool_forward_f64(const tcase *c, double *const *in, double *out) {
    const pool_case *pc = (const void *)c->p;
    const kiln_pool2d_params *p = &pc->p;
    int64_t os[4];
    pool_out_shape(pc, os);
    for (int64_t pl = 0; pl < (int64_t)pc->n * pc->c; pl++)
        for (int64_t i = 0; i < os[2]; i++)
            for (int64_t j = 0; j < os[3]; j++) {
                int64_t hs = i * p->stride_h - p->pad_t, ws = j * p->stride_w - p->pad_l;
                double best = -INFINITY, sum = 0;
                int64_t count = 0, area = 0;
                for (int64_t a = hs; a < hs + p->kernel_h; a++)
                    for (int64_t b = ws; b < ws + p->kernel_w; b++) {
                        if (a < pc->h + p->pad_b && b < pc->w + p->pad_r) area++;
                        if (a < 0 || b < 0 || a >= pc->h || b >= pc->w) continue;
                        double v = in[0][(pl * pc->h + a) * pc->w + b];
                        if (v > best) best = v;
                        sum += v;
                        count++;
                    }
                out[(pl * os[2] + i) * os[3] + j] =
                    p->type == KILN_POOL_MAX ? best
                                             : sum / (double)(p->count_include_pad ? area : count);
            }
}

static kiln_status pool_backward(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads) {
    const pool_case *pc = (const void *)c->p;
    return kiln_pool2d_bwd(x->be, &pc->p, dout, &x->in[0], &grads[0]);
}

static const op_kind pool_kind = {.family = "pool",
                                  .build = pool_build,
                                  .forward_f64 = pool_forward_f64,
                                  .backward = pool_backward,
                                  .grad_mask = 0x1};
/* Max over ties is not differentiable: compared only. */
static const op_kind pool_nograd_kind = {.family = "pool", .build = pool_build};
static const op_kind pool_bwd_kind = {.family = "pool", .build = pool_bwd_build};

typedef struct pool_shape {
    int n, c, h, w;
} pool_shape;

/* Window: kernel kh x kw, stride sh x sw, padding t, b, l, r. */
typedef struct pool_win {
    int kh, kw, sh, sw, pt, pb, pl, pr;
} pool_win;

/* Registers POOL2D and POOL2D_BWD cases for one geometry. */
static void add_pool(int type, pool_shape s, pool_win win, int ceil_mode, int cip, int fill) {
    pool_case pc = {.n = s.n, .c = s.c, .h = s.h, .w = s.w, .fill = fill};
    pc.p = (kiln_pool2d_params){.type = type,
                                .kernel_h = win.kh,
                                .kernel_w = win.kw,
                                .stride_h = win.sh,
                                .stride_w = win.sw,
                                .pad_t = win.pt,
                                .pad_b = win.pb,
                                .pad_l = win.pl,
                                .pad_r = win.pr,
                                .ceil_mode = ceil_mode,
                                .count_include_pad = cip};
    long elems = (long)s.n * s.c * s.h * s.w;
    int small = elems <= 1200 && elems * win.kh * win.kw <= 12000;
    char geo[160];
    snprintf(geo, sizeof geo, "%s n=%d c=%d %dx%d k=%dx%d s=%dx%d pad=%d,%d,%d,%d%s%s%s",
             type == KILN_POOL_MAX ? "max" : "avg", s.n, s.c, s.h, s.w, win.kh, win.kw, win.sh,
             win.sw, win.pt, win.pb, win.pl, win.pr, ceil_mode ? " ceil" : "",
             type == KILN_POOL_AVG && cip ? " count_pad" : "", fill_names[fill]);
    int grad = fill != FILL_TIES && (type == KILN_POOL_AVG || fill == FILL_DISTINCT);
    kiln_add_case(grad ? &pool_kind : &pool_nograd_kind, &pc, sizeof pc, small, "pool2d %s", geo);
    kiln_add_case(&pool_bwd_kind, &pc, sizeof pc, small, "pool2d_bwd %s", geo);
}

static void pool_cases(void) {
    const pool_win w22 = {2, 2, 2, 2, 0, 0, 0, 0}, w32 = {3, 3, 2, 2, 0, 0, 0, 0};
    const pool_win w31p1 = {3, 3, 1, 1, 1, 1, 1, 1}, w32p1 = {3, 3, 2, 2, 1, 1, 1, 1};
    const pool_win w11 = {1, 1, 1, 1, 0, 0, 0, 0};
    for (int type = KILN_POOL_MAX; type <= KILN_POOL_AVG; type++) {
        /* Max gets distinct values so its gradient check cannot straddle a tie. */
        int f = type == KILN_POOL_MAX ? FILL_DISTINCT : FILL_RANDOM;
        add_pool(type, (pool_shape){1, 1, 4, 4}, w22, 0, 0, f);
        add_pool(type, (pool_shape){2, 3, 7, 7}, w22, 0, 0, f);
        add_pool(type, (pool_shape){1, 7, 13, 9}, w22, 0, 0, f);
        add_pool(type, (pool_shape){2, 13, 32, 32}, w22, 0, 0, f);
        add_pool(type, (pool_shape){1, 3, 13, 13}, w32, 0, 0, f);
        add_pool(type, (pool_shape){2, 7, 13, 13}, w32, 0, 0, f);
        add_pool(type, (pool_shape){2, 13, 55, 55}, w32, 0, 0, f); /* AlexNet's first pool */
        add_pool(type, (pool_shape){1, 3, 7, 7}, w31p1, 0, 1, f);
        add_pool(type, (pool_shape){1, 3, 7, 7}, w31p1, 0, 0, f);
        add_pool(type, (pool_shape){2, 7, 32, 32}, w31p1, 0, 1, f);
        add_pool(type, (pool_shape){1, 1, 1, 1}, w11, 0, 0, f);
        add_pool(type, (pool_shape){3, 1, 3, 5}, (pool_win){3, 2, 2, 1, 1, 0, 0, 1}, 0, 1, f);
        add_pool(type, (pool_shape){1, 3, 5, 6}, (pool_win){2, 3, 1, 2, 0, 1, 2, 0}, 0, 0, f);
        /* Ceil mode with odd sizes; on 5 with k=2, s=2, pad 1 the last window would start in
           the bottom padding and is dropped (3 outputs, not 4). */
        add_pool(type, (pool_shape){2, 3, 7, 7}, w22, 1, 0, f);
        add_pool(type, (pool_shape){1, 3, 13, 13}, w32, 1, 0, f);
        add_pool(type, (pool_shape){1, 3, 8, 8}, w32p1, 1, 1, f);
        add_pool(type, (pool_shape){1, 3, 8, 8}, w32p1, 1, 0, f);
        add_pool(type, (pool_shape){2, 7, 5, 5}, (pool_win){2, 2, 2, 2, 1, 1, 1, 1}, 1, 1, f);
        add_pool(type, (pool_shape){2, 7, 5, 5}, (pool_win){2, 2, 2, 2, 1, 1, 1, 1}, 1, 0, f);
        add_pool(type, (pool_shape){2, 3, 9, 11}, (pool_win){3, 3, 2, 3, 0, 2, 1, 0}, 1, 1, f);
        add_pool(type, (pool_shape){2, 3, 9, 11}, (pool_win){3, 3, 2, 3, 0, 2, 1, 0}, 1, 0, f);
        /* Inputs with repeated values: the first maximum in row-major order on every backend. */
        add_pool(type, (pool_shape){2, 3, 8, 8}, w22, 0, 0, FILL_TIES);
        add_pool(type, (pool_shape){2, 3, 13, 13}, w32, 0, 0, FILL_TIES);
        add_pool(type, (pool_shape){1, 7, 7, 7}, w31p1, 0, 1, FILL_TIES);
        add_pool(type, (pool_shape){2, 3, 8, 8}, w32p1, 1, 0, FILL_TIES);
        add_pool(type, (pool_shape){2, 13, 32, 32}, w32, 1, 0, FILL_TIES);
    }
    /* Global average pooling: the kernel covers the input. */
    add_pool(KILN_POOL_AVG, (pool_shape){2, 13, 7, 7}, (pool_win){7, 7, 1, 1, 0, 0, 0, 0}, 0, 0,
             FILL_RANDOM);
    add_pool(KILN_POOL_AVG, (pool_shape){1, 3, 13, 13}, (pool_win){13, 13, 13, 13, 0, 0, 0, 0}, 0,
             0, FILL_RANDOM);
    add_pool(KILN_POOL_AVG, (pool_shape){4, 7, 1, 1}, w11, 0, 0, FILL_RANDOM);
    add_pool(KILN_POOL_AVG, (pool_shape){2, 5, 3, 3}, (pool_win){3, 3, 1, 1, 0, 0, 0, 0}, 0, 0,
             FILL_RANDOM);
}

/* ---- local response normalization ---- */

typedef struct lrn_case {
    int n, c, h, w;
    float range; /* x uniform in [-range, range) */
    kiln_lrn_params p;
} lrn_case;

static kiln_status lrn_build(const tcase *c, tctx *x) {
    const lrn_case *lc = (const void *)c->p;
    int64_t shape[4] = {lc->n, lc->c, lc->h, lc->w};
    kiln_status st;
    if ((st = f32_input(c, x, 0, 4, shape, -lc->range, lc->range, FILL_RANDOM)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, shape, 0)))
        return st;
    kiln_case_node(x, KILN_OP_LRN, &lc->p, sizeof lc->p, 0x1);
    return KILN_OK;
}

static kiln_status lrn_bwd_build(const tcase *c, tctx *x) {
    const lrn_case *lc = (const void *)c->p;
    int64_t shape[4] = {lc->n, lc->c, lc->h, lc->w};
    kiln_status st;
    if ((st = f32_input(c, x, 0, 4, shape, -1, 1, FILL_RANDOM)) ||
        (st = f32_input(c, x, 1, 4, shape, -lc->range, lc->range, FILL_RANDOM)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, shape, 0)))
        return st;
    kiln_case_node(x, KILN_OP_LRN_BWD, &lc->p, sizeof lc->p, 0x3);
    return KILN_OK;
}

static void lrn_forward_f64(const tcase *c, double *const *in, double *out) {
    const lrn_case *lc = (const void *)c->p;
    int64_t hw = (int64_t)lc->h * lc->w, size = lc->p.size;
    for (int64_t n = 0; n < lc->n; n++)
        for (int64_t ch = 0; ch < lc->c; ch++)
            for (int64_t e = 0; e < hw; e++) {
                double s = 0;
                for (int64_t k = ch - size / 2; k <= ch + (size - 1) / 2; k++)
                    if (k >= 0 && k < lc->c) {
                        double v = in[0][(n * lc->c + k) * hw + e];
                        s += v * v;
                    }
                int64_t at = (n * lc->c + ch) * hw + e;
                out[at] = in[0][at] * pow(lc->p.k + lc->p.alpha / (double)size * s, -lc->p.beta);
            }
}

static kiln_status lrn_backward(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads) {
    const lrn_case *lc = (const void *)c->p;
    return kiln_lrn_bwd(x->be, &lc->p, dout, &x->in[0], &grads[0]);
}

static const op_kind lrn_kind = {.family = "pool",
                                 .build = lrn_build,
                                 .forward_f64 = lrn_forward_f64,
                                 .backward = lrn_backward,
                                 .grad_mask = 0x1};
static const op_kind lrn_bwd_kind = {.family = "pool", .build = lrn_bwd_build};

static void add_lrn(int n, int ch, int h, int w, float range, kiln_lrn_params p) {
    lrn_case lc = {n, ch, h, w, range, p};
    int small = (long)n * ch * h * w <= 600;
    const char *fmt = "%s n=%d c=%d %dx%d size=%d alpha=%g beta=%g k=%g range=%g";
    kiln_add_case(&lrn_kind, &lc, sizeof lc, small, fmt, "lrn", n, ch, h, w, (int)p.size,
                  (double)p.alpha, (double)p.beta, (double)p.k, (double)range);
    kiln_add_case(&lrn_bwd_kind, &lc, sizeof lc, small, fmt, "lrn_bwd", n, ch, h, w, (int)p.size,
                  (double)p.alpha, (double)p.beta, (double)p.k, (double)range);
}

static void lrn_cases(void) {
    const kiln_lrn_params alexnet = {5, 1e-4f, 0.75f, 2.0f};
    /* AlexNet's parameters barely normalize inputs of order 1; larger ones exercise the
       cross-channel terms of the gradient. */
    add_lrn(1, 7, 3, 3, 1, alexnet);
    add_lrn(2, 13, 7, 7, 1, alexnet);
    add_lrn(2, 96, 13, 13, 20, alexnet);
    add_lrn(1, 13, 3, 5, 2, (kiln_lrn_params){5, 1.0f, 0.75f, 2.0f});
    add_lrn(2, 7, 4, 3, 2, (kiln_lrn_params){5, 0.5f, 0.75f, 1.0f});
    for (int size = 1; size <= 4; size++) {
        add_lrn(2, 7, 3, 3, 2, (kiln_lrn_params){size, 1.0f, 0.75f, 1.0f});
        add_lrn(1, 3, 5, 1, 2, (kiln_lrn_params){size, 0.8f, 0.5f, 1.5f});
    }
    /* Windows wider than the channel count. */
    add_lrn(2, 1, 3, 3, 2, (kiln_lrn_params){3, 1.0f, 0.75f, 1.0f});
    add_lrn(1, 2, 3, 3, 2, (kiln_lrn_params){5, 1.0f, 0.75f, 1.0f});
    add_lrn(1, 3, 2, 2, 2, (kiln_lrn_params){5, 1.0f, 1.5f, 2.0f});
    add_lrn(1, 1, 1, 1, 2, (kiln_lrn_params){2, 1.0f, 0.75f, 1.0f});
    add_lrn(1, 3, 1, 1, 2, (kiln_lrn_params){2, 1.0f, 0.75f, 1.0f});
    add_lrn(3, 13, 32, 17, 3, (kiln_lrn_params){3, 0.1f, 0.75f, 1.0f});
}

/* ---- copies ---- */

/* A view (shape, element strides, element offset) of a contiguous base tensor. */
typedef struct view_desc {
    int nd;
    int64_t base[4], shape[4], stride[4], offset;
} view_desc;

/* dims of base permuted: view dim i is base dim perm[i]. */
static view_desc transposed(int nd, const int64_t *base, const int *perm) {
    view_desc v = {.nd = nd};
    int64_t contig[4], s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        contig[d] = s;
        s *= base[d];
    }
    for (int d = 0; d < nd; d++) {
        v.base[d] = base[d];
        v.shape[d] = base[perm[d]];
        v.stride[d] = contig[perm[d]];
    }
    return v;
}

/* base[start:start+len] along axis. */
static view_desc sliced(int nd, const int64_t *base, int axis, int64_t start, int64_t len) {
    int perm[4] = {0, 1, 2, 3};
    view_desc v = transposed(nd, base, perm);
    v.shape[axis] = len;
    v.offset = start * v.stride[axis];
    return v;
}

static float dtype_lo(kiln_dtype t) {
    return t == KILN_U8 ? 0.0f : t == KILN_I32 ? -100000.0f : -1.0f;
}
static float dtype_hi(kiln_dtype t) {
    return t == KILN_U8 ? 256.0f : t == KILN_I32 ? 100000.0f : 1.0f;
}

/* in[idx] = the view v of a fresh base tensor. */
static kiln_status view_input(const tcase *c, tctx *x, int idx, kiln_dtype dtype,
                              const view_desc *v) {
    kiln_status st =
        kiln_case_input(c, x, idx, dtype, v->nd, v->base, dtype_lo(dtype), dtype_hi(dtype));
    if (st) return st;
    int64_t es = (int64_t)kiln_dtype_size(dtype), stride[4];
    for (int d = 0; d < v->nd; d++) stride[d] = v->stride[d] * es;
    kiln_tensor base = x->in[idx];
    st = kiln_tensor_view(&x->in[idx], &base, v->nd, v->shape, stride, (size_t)(v->offset * es));
    x->in[idx].view_src = NULL; /* base is a local; the view keeps its storage */
    return st;
}

/* The output: contiguous, or (padded) a view whose rows are 3 elements longer, so the gaps
   must come back untouched. */
static kiln_status copy_output(const tcase *c, tctx *x, kiln_dtype dtype, int nd,
                               const int64_t *shape, int padded) {
    int64_t full[4];
    memcpy(full, shape, sizeof(int64_t) * (size_t)nd);
    if (padded) full[nd - 1] += 3;
    kiln_status st = kiln_case_output(c, x, dtype, nd, full, 0);
    if (st || !padded) return st;
    kiln_tensor whole = x->out;
    st = kiln_tensor_view(&x->out, &whole, nd, shape, whole.stride, 0);
    x->out.view_src = NULL;
    snprintf(x->out.name, sizeof x->out.name, "out");
    return st;
}

typedef struct copy_case {
    kiln_dtype dtype;
    int padded_dst;
    view_desc v;
} copy_case;

static kiln_status copy_build(const tcase *c, tctx *x) {
    const copy_case *cc = (const void *)c->p;
    kiln_status st;
    if ((st = view_input(c, x, 0, cc->dtype, &cc->v)) ||
        (st = copy_output(c, x, cc->dtype, cc->v.nd, cc->v.shape, cc->padded_dst)))
        return st;
    kiln_case_node(x, KILN_OP_COPY, cc, 0, 0x1);
    return KILN_OK;
}

static const op_kind copy_kind = {.family = "pool", .build = copy_build};

static void add_copy(kiln_dtype dtype, const char *what, view_desc v, int padded_dst) {
    copy_case cc = {dtype, padded_dst, v};
    char dims[64];
    int len = 0;
    for (int d = 0; d < v.nd; d++)
        len += snprintf(dims + len, sizeof dims - (size_t)len, "%s%lld", d ? "x" : "",
                        (long long)v.shape[d]);
    long n = 1;
    for (int d = 0; d < v.nd; d++) n *= (long)v.base[d];
    kiln_add_case(&copy_kind, &cc, sizeof cc, n <= 4096, "copy %s %s %s%s", kiln_dtype_name(dtype),
                  dims, what, padded_dst ? " dst padded" : "");
}

static void copy_cases(void) {
    static const kiln_dtype dtypes[] = {KILN_F32, KILN_I32, KILN_U8};
    const int64_t nchw[4] = {2, 7, 5, 9}, big[4] = {4, 32, 28, 28}, mat[2] = {37, 53};
    const int nhwc[4] = {0, 2, 3, 1}, swap23[4] = {0, 1, 3, 2}, rev[4] = {3, 2, 1, 0};
    const int ident[4] = {0, 1, 2, 3}, t2[2] = {1, 0};
    for (int t = 0; t < 3; t++) {
        kiln_dtype dt = dtypes[t];
        add_copy(dt, "contiguous", transposed(4, nchw, ident), 0);
        add_copy(dt, "contiguous", transposed(4, nchw, ident), 1);
        add_copy(dt, "nchw->nhwc", transposed(4, nchw, nhwc), 0);
        add_copy(dt, "transpose hw", transposed(4, nchw, swap23), 1);
        add_copy(dt, "reversed dims", transposed(4, nchw, rev), 0);
        add_copy(dt, "matrix transpose", transposed(2, mat, t2), 0);
        add_copy(dt, "channels 2..5", sliced(4, nchw, 1, 2, 3), 0);
        add_copy(dt, "rows 1..3", sliced(4, nchw, 2, 1, 3), 1);
        add_copy(dt, "columns 4..8", sliced(4, nchw, 3, 4, 5), 0);
        add_copy(dt, "image 1", sliced(4, nchw, 0, 1, 1), 0);
    }
    add_copy(KILN_F32, "nchw->nhwc", transposed(4, big, nhwc), 0);
    add_copy(KILN_F32, "channels 5..21", sliced(4, big, 1, 5, 16), 1);
    add_copy(KILN_U8, "nhwc->nchw",
             transposed(4, (const int64_t[4]){4, 28, 28, 3}, (const int[4]){0, 3, 1, 2}), 0);
    add_copy(KILN_F32, "1-D", transposed(1, (const int64_t[1]){1}, ident), 0);
    /* A broadcast source: stride 0 along dim 1. */
    view_desc bcast = transposed(3, (const int64_t[3]){3, 1, 5}, ident);
    bcast.shape[1] = 4;
    bcast.stride[1] = 0;
    add_copy(KILN_F32, "broadcast", bcast, 0);
}

/* ---- concatenation ---- */

typedef struct concat_case {
    kiln_dtype dtype;
    int nd, axis, n, transposed_src, padded_dst;
    int64_t shape[4]; /* of every source, except along axis */
    int64_t sizes[KILN_MAX_SRC];
} concat_case;

static kiln_status concat_build(const tcase *c, tctx *x) {
    const concat_case *cc = (const void *)c->p;
    int64_t out[4];
    memcpy(out, cc->shape, sizeof out);
    out[cc->axis] = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; !st && i < cc->n; i++) {
        int64_t s[4];
        memcpy(s, cc->shape, sizeof s);
        s[cc->axis] = cc->sizes[i];
        out[cc->axis] += cc->sizes[i];
        if (i == 0 && cc->transposed_src) {
            /* A source that is the transpose of its last two dims' storage. */
            int64_t base[4];
            int perm[4] = {0, 1, 2, 3};
            memcpy(base, s, sizeof base);
            base[cc->nd - 1] = s[cc->nd - 2];
            base[cc->nd - 2] = s[cc->nd - 1];
            perm[cc->nd - 1] = cc->nd - 2;
            perm[cc->nd - 2] = cc->nd - 1;
            view_desc v = transposed(cc->nd, base, perm);
            st = view_input(c, x, i, cc->dtype, &v);
        } else {
            st = kiln_case_input(c, x, i, cc->dtype, cc->nd, s, dtype_lo(cc->dtype),
                                 dtype_hi(cc->dtype));
        }
    }
    if (st || (st = copy_output(c, x, cc->dtype, cc->nd, out, cc->padded_dst))) return st;
    kiln_concat_params p = {cc->axis};
    kiln_case_node(x, KILN_OP_CONCAT, &p, sizeof p, (1u << cc->n) - 1);
    return KILN_OK;
}

static const op_kind concat_kind = {.family = "pool", .build = concat_build};

static void add_concat(concat_case cc) {
    char sizes[64];
    int len = 0;
    long n = 0, rest = 1;
    for (int i = 0; i < cc.n; i++) {
        len += snprintf(sizes + len, sizeof sizes - (size_t)len, "%s%lld", i ? "+" : "",
                        (long long)cc.sizes[i]);
        n += (long)cc.sizes[i];
    }
    for (int d = 0; d < cc.nd; d++)
        if (d != cc.axis) rest *= (long)cc.shape[d];
    kiln_add_case(&concat_kind, &cc, sizeof cc, n * rest <= 4096,
                  "concat %s nd=%d axis=%d sizes=%s shape=%lldx%lldx%lldx%lld%s%s",
                  kiln_dtype_name(cc.dtype), cc.nd, cc.axis, sizes, (long long)cc.shape[0],
                  (long long)cc.shape[1], (long long)cc.shape[2], (long long)cc.shape[3],
                  cc.transposed_src ? " transposed src0" : "", cc.padded_dst ? " dst padded" : "");
}

static void concat_cases(void) {
    /* Along channels: 2 to 6 sources (inception-style). */
    const int64_t chans[KILN_MAX_SRC] = {3, 1, 7, 13, 2, 5};
    for (int n = 2; n <= KILN_MAX_SRC; n++) {
        concat_case cc = {.nd = 4, .axis = 1, .n = n, .shape = {2, 0, 5, 7}};
        memcpy(cc.sizes, chans, sizeof chans);
        add_concat(cc);
    }
    add_concat((concat_case){.nd = 4, .axis = 1, .n = 1, .shape = {2, 0, 3, 3}, .sizes = {4}});
    add_concat(
        (concat_case){.nd = 4, .axis = 1, .n = 3, .shape = {4, 0, 28, 28}, .sizes = {64, 32, 96}});
    add_concat((concat_case){.nd = 4,
                             .axis = 1,
                             .n = 3,
                             .shape = {2, 0, 5, 7},
                             .sizes = {2, 3, 4},
                             .transposed_src = 1,
                             .padded_dst = 1});
    /* Along the batch. */
    add_concat((concat_case){.nd = 4, .axis = 0, .n = 2, .shape = {0, 3, 4, 4}, .sizes = {1, 3}});
    add_concat((concat_case){
        .nd = 4, .axis = 0, .n = 4, .shape = {0, 3, 5, 5}, .sizes = {2, 1, 3, 2}, .padded_dst = 1});
    add_concat((concat_case){
        .nd = 4, .axis = 0, .n = 2, .shape = {0, 3, 4, 6}, .sizes = {2, 3}, .transposed_src = 1});
    /* Along the spatial dims, and 2-D / 3-D tensors. */
    add_concat(
        (concat_case){.nd = 4, .axis = 2, .n = 3, .shape = {2, 3, 0, 5}, .sizes = {1, 4, 2}});
    add_concat((concat_case){
        .nd = 4, .axis = 3, .n = 2, .shape = {2, 3, 4, 0}, .sizes = {5, 2}, .transposed_src = 1});
    add_concat((concat_case){.nd = 2, .axis = 1, .n = 3, .shape = {7, 0}, .sizes = {3, 1, 9}});
    add_concat((concat_case){.nd = 2, .axis = 0, .n = 2, .shape = {0, 11}, .sizes = {4, 5}});
    add_concat((concat_case){
        .nd = 3, .axis = 1, .n = 2, .shape = {3, 0, 4}, .sizes = {2, 5}, .padded_dst = 1});
    /* Integer data. */
    add_concat((concat_case){
        .dtype = KILN_I32, .nd = 4, .axis = 1, .n = 3, .shape = {2, 0, 3, 3}, .sizes = {1, 2, 3}});
    add_concat((concat_case){.dtype = KILN_U8,
                             .nd = 4,
                             .axis = 3,
                             .n = 3,
                             .shape = {2, 3, 4, 0},
                             .sizes = {1, 2, 3},
                             .transposed_src = 1});
    add_concat((concat_case){
        .dtype = KILN_U8, .nd = 4, .axis = 0, .n = 2, .shape = {0, 3, 4, 4}, .sizes = {2, 1}});
}

/* every pooling layer `kiln bench` times (perf/bench-cases.h), at kiln_bench_test_input */
static void bench_pool_cases(void) {
    for (int net = 0; net < KILN_BENCH_NNETS; net++)
        for (int in = 0; kiln_bench_test_input(net, in); in++) {
            kiln_bench_layer l[32];
            int nl = kiln_bench_net_layers(net, kiln_bench_test_input(net, in), l, 32);
            for (int i = 0; i < nl; i++)
                if (l[i].pool_k) {
                    int k = l[i].pool_k, s = l[i].pool_s;
                    add_pool(KILN_POOL_MAX, (pool_shape){3, l[i].c, l[i].h, l[i].w},
                             (pool_win){k, k, s, s, 0, 0, 0, 0}, 1, 0, FILL_DISTINCT);
                }
        }
}

void kiln_cases_pool(void) {
    pool_cases();
    bench_pool_cases();
    lrn_cases();
    copy_cases();
    concat_cases();
}
