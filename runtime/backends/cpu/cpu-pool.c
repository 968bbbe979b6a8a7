/* Pooling, local response normalization and strided copies on the host: the reference every
   other backend is compared with. Sums run in float in the same order as kiln's kernels
   (window in row-major order, contributions to a gradient in output order), so results agree
   to the last bit wherever the arithmetic is the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "kiln/ops.h"

/* ---- pooling ---- */

typedef struct pool_geom {
    kiln_pool2d_params p;
    int64_t planes, h, w, oh, ow;
} pool_geom;

static pool_geom pool_geometry(const kiln_tensor *node, const kiln_tensor *x,
                               const kiln_tensor *pooled) {
    pool_geom g;
    memcpy(&g.p, node->op_params, sizeof g.p);
    g.planes = x->shape[0] * x->shape[1];
    g.h = x->shape[2];
    g.w = x->shape[3];
    g.oh = pooled->shape[2];
    g.ow = pooled->shape[3];
    return g;
}

/* The input rows [h0, h1) and columns [w0, w1) of window (i, j); returns its avg divisor. */
static float pool_window(const pool_geom *g, int64_t i, int64_t j, int64_t *h0, int64_t *h1,
                         int64_t *w0, int64_t *w1) {
    const kiln_pool2d_params *p = &g->p;
    int64_t hs = i * p->stride_h - p->pad_t, ws = j * p->stride_w - p->pad_l;
    int64_t he = hs + p->kernel_h, we = ws + p->kernel_w;
    *h0 = hs > 0 ? hs : 0;
    *w0 = ws > 0 ? ws : 0;
    *h1 = he < g->h ? he : g->h;
    *w1 = we < g->w ? we : g->w;
    if (p->count_include_pad) {
        /* The window clipped to input plus padding (ceil mode may run past both). */
        int64_t hp = he < g->h + p->pad_b ? he : g->h + p->pad_b;
        int64_t wp = we < g->w + p->pad_r ? we : g->w + p->pad_r;
        return (float)((hp - hs) * (wp - ws));
    }
    return (float)((*h1 - *h0) * (*w1 - *w0));
}

/* The first maximum in row-major window order; a NaN beats any number (the first NaN wins),
   so NaN propagates as in PyTorch while the choice stays deterministic. */
static int64_t window_argmax(const float *plane, int64_t w, int64_t h0, int64_t h1, int64_t w0,
                             int64_t w1) {
    int64_t best = h0 * w + w0;
    float m = plane[best];
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
            float v = plane[ih * w + iw];
            if (v > m || (isnan(v) && !isnan(m))) {
                m = v;
                best = ih * w + iw;
            }
        }
    return best;
}

kiln_status kiln_cpu_pool2d(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *xt = dst->src[0];
    pool_geom g = pool_geometry(dst, xt, dst);
    const float *x = kiln_tensor_host_data(xt);
    float *y = kiln_tensor_host_data(dst);
    for (int64_t pl = 0; pl < g.planes; pl++) {
        const float *xp = x + pl * g.h * g.w;
        float *yp = y + pl * g.oh * g.ow;
        for (int64_t i = 0; i < g.oh; i++)
            for (int64_t j = 0; j < g.ow; j++) {
                int64_t h0, h1, w0, w1;
                float div = pool_window(&g, i, j, &h0, &h1, &w0, &w1);
                if (g.p.type == KILN_POOL_MAX) {
                    yp[i * g.ow + j] = xp[window_argmax(xp, g.w, h0, h1, w0, w1)];
                    continue;
                }
                float s = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * g.w + iw];
                yp[i * g.ow + j] = s / div;
            }
    }
    return KILN_OK;
}

kiln_status kiln_cpu_pool2d_bwd(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *dyt = dst->src[0], *xt = dst->src[1];
    pool_geom g = pool_geometry(dst, xt, dyt);
    const float *dy = kiln_tensor_host_data(dyt), *x = kiln_tensor_host_data(xt);
    float *dx = kiln_tensor_host_data(dst);
    memset(dx, 0, (size_t)(g.planes * g.h * g.w) * sizeof *dx);
    for (int64_t pl = 0; pl < g.planes; pl++) {
        const float *xp = x + pl * g.h * g.w, *dyp = dy + pl * g.oh * g.ow;
        float *dxp = dx + pl * g.h * g.w;
        for (int64_t i = 0; i < g.oh; i++)
            for (int64_t j = 0; j < g.ow; j++) {
                int64_t h0, h1, w0, w1;
                float div = pool_window(&g, i, j, &h0, &h1, &w0, &w1);
                if (g.p.type == KILN_POOL_MAX) {
                    dxp[window_argmax(xp, g.w, h0, h1, w0, w1)] += dyp[i * g.ow + j];
                    continue;
                }
                float share = dyp[i * g.ow + j] / div;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dxp[ih * g.w + iw] += share;
            }
    }
    return KILN_OK;
}

/* ---- local response normalization ---- */

typedef struct lrn_geom {
    kiln_lrn_params p;
    int64_t n, c, hw;
    float coef; /* alpha / size */
} lrn_geom;

static lrn_geom lrn_geometry(const kiln_tensor *node, const kiln_tensor *x) {
    lrn_geom g;
    memcpy(&g.p, node->op_params, sizeof g.p);
    g.n = x->shape[0];
    g.c = x->shape[1];
    g.hw = x->shape[2] * x->shape[3];
    g.coef = g.p.alpha / (float)g.p.size;
    return g;
}

/* s[c][hw] = k + alpha/size * sum of x^2 over the channel window of c, for one image. */
static void lrn_scale(const lrn_geom *g, const float *x, float *s) {
    int64_t before = g->p.size / 2, after = (g->p.size - 1) / 2;
    for (int64_t c = 0; c < g->c; c++) {
        int64_t lo = c - before > 0 ? c - before : 0;
        int64_t hi = c + after < g->c - 1 ? c + after : g->c - 1;
        float *sc = s + c * g->hw;
        for (int64_t e = 0; e < g->hw; e++) sc[e] = 0;
        for (int64_t k = lo; k <= hi; k++) {
            const float *xk = x + k * g->hw;
            for (int64_t e = 0; e < g->hw; e++) sc[e] += xk[e] * xk[e];
        }
        for (int64_t e = 0; e < g->hw; e++) sc[e] = g->p.k + g->coef * sc[e];
    }
}

kiln_status kiln_cpu_lrn(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    lrn_geom g = lrn_geometry(dst, dst->src[0]);
    const float *x = kiln_tensor_host_data(dst->src[0]);
    float *y = kiln_tensor_host_data(dst);
    size_t img = (size_t)(g.c * g.hw);
    float *s = malloc((img ? img : 1) * sizeof *s);
    if (!s) return kiln_error(KILN_OUT_OF_MEMORY, "lrn: out of host memory");
    for (int64_t n = 0; n < g.n; n++) {
        const float *xn = x + (size_t)n * img;
        float *yn = y + (size_t)n * img;
        lrn_scale(&g, xn, s);
        for (size_t e = 0; e < img; e++) yn[e] = xn[e] * powf(s[e], -g.p.beta);
    }
    free(s);
    return KILN_OK;
}

/* With s_c the scale and y_c = x_c s_c^-beta, channel j feeds the scales of the channels c
   with j in window(c), i.e. c in [j - (size-1)/2, j + size/2]:
     dx_j = dy_j s_j^-beta - 2 alpha beta / size * x_j * sum_c dy_c x_c s_c^-beta / s_c. */
kiln_status kiln_cpu_lrn_bwd(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    lrn_geom g = lrn_geometry(dst, dst->src[1]);
    const float *dy = kiln_tensor_host_data(dst->src[0]), *x = kiln_tensor_host_data(dst->src[1]);
    float *dx = kiln_tensor_host_data(dst);
    size_t img = (size_t)(g.c * g.hw);
    float *s = malloc((img ? img : 1) * 2 * sizeof *s);
    if (!s) return kiln_error(KILN_OUT_OF_MEMORY, "lrn_bwd: out of host memory");
    float *t = s + img, coef2 = 2.0f * g.p.alpha * g.p.beta / (float)g.p.size;
    int64_t before = (g.p.size - 1) / 2, after = g.p.size / 2;
    for (int64_t n = 0; n < g.n; n++) {
        const float *xn = x + (size_t)n * img, *dyn = dy + (size_t)n * img;
        float *dxn = dx + (size_t)n * img;
        lrn_scale(&g, xn, s);
        for (size_t e = 0; e < img; e++) {
            float sb = powf(s[e], -g.p.beta);
            t[e] = dyn[e] * xn[e] * sb / s[e];
            s[e] = sb; /* from here on s holds s^-beta */
        }
        for (int64_t j = 0; j < g.c; j++) {
            int64_t lo = j - before > 0 ? j - before : 0;
            int64_t hi = j + after < g.c - 1 ? j + after : g.c - 1;
            for (int64_t e = 0; e < g.hw; e++) {
                float acc = 0;
                for (int64_t c = lo; c <= hi; c++) acc += t[c * g.hw + e];
                size_t at = (size_t)(j * g.hw + e);
                dxn[at] = dyn[at] * s[at] - coef2 * xn[at] * acc;
            }
        }
    }
    free(s);
    return KILN_OK;
}

/* ---- copies ---- */

/* dst = src element by element over any byte strides (shapes and dtypes match). */
static void copy_strided(const kiln_tensor *src, const kiln_tensor *dst) {
    int64_t shape[4] = {1, 1, 1, 1}, ss[4] = {0, 0, 0, 0}, ds[4] = {0, 0, 0, 0};
    int lead = 4 - src->ndim;
    for (int d = 0; d < src->ndim; d++) {
        shape[lead + d] = src->shape[d];
        ss[lead + d] = src->stride[d];
        ds[lead + d] = dst->stride[d];
    }
    const char *s = kiln_tensor_host_data(src);
    char *d = kiln_tensor_host_data(dst);
    size_t es = kiln_dtype_size(src->dtype);
    for (int64_t a = 0; a < shape[0]; a++)
        for (int64_t b = 0; b < shape[1]; b++)
            for (int64_t c = 0; c < shape[2]; c++) {
                const char *sr = s + a * ss[0] + b * ss[1] + c * ss[2];
                char *dr = d + a * ds[0] + b * ds[1] + c * ds[2];
                if (ss[3] == (int64_t)es && ds[3] == (int64_t)es)
                    memcpy(dr, sr, (size_t)shape[3] * es);
                else
                    for (int64_t e = 0; e < shape[3]; e++)
                        memcpy(dr + e * ds[3], sr + e * ss[3], es);
            }
}

kiln_status kiln_cpu_copy(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    copy_strided(dst->src[0], dst);
    return KILN_OK;
}

kiln_status kiln_cpu_concat(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    int64_t at = 0;
    for (int i = 0; i < KILN_MAX_SRC && dst->src[i]; i++) {
        kiln_tensor part;
        kiln_concat_part(dst, i, &at, &part);
        copy_strided(dst->src[i], &part);
    }
    return KILN_OK;
}
