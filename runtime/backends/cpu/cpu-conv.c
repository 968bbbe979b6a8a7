/* Convolution on the host, the reference for every other backend: per image and group, im2col
   into a [C/g*KH*KW, OH*OW] matrix and one OpenBLAS sgemm (a 1x1, stride 1, unpadded kernel
   uses the input in place); backward data is the transposed GEMM followed by col2im. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../ops-impl.h"
#include "cpu-ops.h"

typedef struct {
    int64_t n, c, h, w, o, kh, kw, oh, ow, groups, cg, og;
    int64_t k;   /* rows of the column matrix: C/g * KH * KW */
    int64_t ohw; /* its columns: OH * OW */
    kiln_conv2d_params p;
} geom;

static void decode(const kiln_tensor *dst, const kiln_tensor *x, const kiln_tensor *w,
                   const kiln_tensor *y, geom *g) {
    memcpy(&g->p, dst->op_params, sizeof g->p);
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->o = w->shape[0];
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->oh = y->shape[2];
    g->ow = y->shape[3];
    g->groups = g->p.groups;
    g->cg = g->c / g->groups;
    g->og = g->o / g->groups;
    g->k = g->cg * g->kh * g->kw;
    g->ohw = g->oh * g->ow;
}

/* The column matrix can be the input itself. */
static int is_pointwise(const geom *g) {
    return g->kh == 1 && g->kw == 1 && g->p.stride_h == 1 && g->p.stride_w == 1 && !g->p.pad_t &&
           !g->p.pad_b && !g->p.pad_l && !g->p.pad_r;
}

/* x: one image's C/g channels [cg, h, w] -> col [k, ohw]; padding reads as zero. */
static void im2col(const geom *g, const float *x, float *col) {
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *row = col + ((c * g->kh + i) * g->kw + j) * g->ohw;
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    float *out = row + oy * g->ow;
                    int64_t iy = oy * g->p.stride_h - g->p.pad_t + i * g->p.dil_h;
                    if (iy < 0 || iy >= g->h) {
                        memset(out, 0, sizeof *out * (size_t)g->ow);
                        continue;
                    }
                    const float *in = x + (c * g->h + iy) * g->w;
                    for (int64_t ox = 0; ox < g->ow; ox++) {
                        int64_t ix = ox * g->p.stride_w - g->p.pad_l + j * g->p.dil_w;
                        out[ox] = ix >= 0 && ix < g->w ? in[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: dx (zeroed here) accumulates every column entry that read it. */
static void col2im(const geom *g, const float *col, float *dx) {
    memset(dx, 0, sizeof *dx * (size_t)(g->cg * g->h * g->w));
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = col + ((c * g->kh + i) * g->kw + j) * g->ohw;
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    int64_t iy = oy * g->p.stride_h - g->p.pad_t + i * g->p.dil_h;
                    if (iy < 0 || iy >= g->h) continue;
                    float *out = dx + (c * g->h + iy) * g->w;
                    const float *in = row + oy * g->ow;
                    for (int64_t ox = 0; ox < g->ow; ox++) {
                        int64_t ix = ox * g->p.stride_w - g->p.pad_l + j * g->p.dil_w;
                        if (ix >= 0 && ix < g->w) out[ix] += in[ox];
                    }
                }
            }
}

static kiln_status host_ptrs(const char *op, int n, const kiln_tensor *const *t, float **out) {
    for (int i = 0; i < n; i++) {
        out[i] = t[i] ? kiln_tensor_host_data(t[i]) : NULL;
        if (t[i] && !out[i])
            return kiln_error(KILN_INTERNAL, "cpu %s: tensor not in host memory", op);
    }
    return KILN_OK;
}

static kiln_status alloc_col(const char *op, const geom *g, float **col) {
    *col = NULL;
    if (is_pointwise(g)) return KILN_OK;
    *col = malloc(sizeof **col * (size_t)(g->k * g->ohw));
    return *col ? KILN_OK
                : kiln_error(KILN_OUT_OF_MEMORY,
                             "cpu %s: no host memory for a %lldx%lld column "
                             "matrix",
                             op, (long long)g->k, (long long)g->ohw);
}

kiln_status kiln_cpu_conv2d(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *t[4] = {dst->src[0], dst->src[1], dst->src[2], dst};
    float *ptr[4], *col;
    geom g;
    decode(dst, t[0], t[1], dst, &g);
    kiln_status st = host_ptrs("conv2d", 4, t, ptr);
    if (st || (st = alloc_col("conv2d", &g, &col))) return st;
    const float *x = ptr[0], *w = ptr[1], *bias = ptr[2];
    float *y = ptr[3];
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t gi = 0; gi < g.groups; gi++) {
            const float *xg = x + (n * g.c + gi * g.cg) * g.h * g.w;
            if (col) im2col(&g, xg, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)g.og, (blasint)g.ohw,
                        (blasint)g.k, 1.0f, w + gi * g.og * g.k, (blasint)g.k, col ? col : xg,
                        (blasint)g.ohw, 0.0f, y + (n * g.o + gi * g.og) * g.ohw, (blasint)g.ohw);
        }
    if (bias)
        for (int64_t n = 0; n < g.n; n++)
            for (int64_t o = 0; o < g.o; o++) {
                float *plane = y + (n * g.o + o) * g.ohw;
                for (int64_t i = 0; i < g.ohw; i++) plane[i] += bias[o];
            }
    free(col);
    return KILN_OK;
}

kiln_status kiln_cpu_conv2d_bwd_data(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *t[3] = {dst->src[0], dst->src[1], dst};
    float *ptr[3], *col;
    geom g;
    decode(dst, dst, t[1], t[0], &g);
    kiln_status st = host_ptrs("conv2d_bwd_data", 3, t, ptr);
    if (st || (st = alloc_col("conv2d_bwd_data", &g, &col))) return st;
    const float *dy = ptr[0], *w = ptr[1];
    float *dx = ptr[2];
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t gi = 0; gi < g.groups; gi++) {
            float *dxg = dx + (n * g.c + gi * g.cg) * g.h * g.w;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)g.k, (blasint)g.ohw,
                        (blasint)g.og, 1.0f, w + gi * g.og * g.k, (blasint)g.k,
                        dy + (n * g.o + gi * g.og) * g.ohw, (blasint)g.ohw, 0.0f, col ? col : dxg,
                        (blasint)g.ohw);
            if (col) col2im(&g, col, dxg);
        }
    free(col);
    return KILN_OK;
}

kiln_status kiln_cpu_conv2d_bwd_filter(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *t[3] = {dst->src[0], dst->src[1], dst};
    float *ptr[3], *col;
    geom g;
    decode(dst, t[0], dst, t[1], &g);
    kiln_status st = host_ptrs("conv2d_bwd_filter", 3, t, ptr);
    if (st || (st = alloc_col("conv2d_bwd_filter", &g, &col))) return st;
    const float *x = ptr[0], *dy = ptr[1];
    float *dw = ptr[2];
    if (!g.n) memset(dw, 0, sizeof *dw * (size_t)(g.o * g.k));
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t gi = 0; gi < g.groups; gi++) {
            const float *xg = x + (n * g.c + gi * g.cg) * g.h * g.w;
            if (col) im2col(&g, xg, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)g.og, (blasint)g.k,
                        (blasint)g.ohw, 1.0f, dy + (n * g.o + gi * g.og) * g.ohw, (blasint)g.ohw,
                        col ? col : xg, (blasint)g.ohw, n ? 1.0f : 0.0f, dw + gi * g.og * g.k,
                        (blasint)g.k);
        }
    free(col);
    return KILN_OK;
}

kiln_status kiln_cpu_bias_grad(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const kiln_tensor *t[2] = {dst->src[0], dst};
    float *ptr[2];
    kiln_status st = host_ptrs("bias_grad", 2, t, ptr);
    if (st) return st;
    const kiln_tensor *dy = t[0];
    int64_t n = dy->shape[0], c = dy->shape[1], plane = 1;
    for (int d = 2; d < dy->ndim; d++) plane *= dy->shape[d];
    for (int64_t ci = 0; ci < c; ci++) {
        float s = 0.0f;
        for (int64_t ni = 0; ni < n; ni++) {
            const float *in = ptr[0] + (ni * c + ci) * plane;
            for (int64_t i = 0; i < plane; i++) s += in[i];
        }
        ptr[1][ci] = s;
    }
    return KILN_OK;
}
