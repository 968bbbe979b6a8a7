/* The opencl backend's convolutions (kernels/conv.cl). Per call it picks one of:
 *
 *   direct   conv2d only, when C/groups is at most the device type's threshold (below; a
 *            network's first layer, C = 1 or 3): conv_direct computes a register tile of
 *            output channels x pixels per work-item and needs no column matrix.
 *   gemm     everything else (and, as auto's opencl-gemm, the forward and backward-data
 *            passes the tiled form would run): chunks of nb images (as many as fit
 *            KILN_CONV_WORKSPACE bytes of column matrix plus staging, in chunks of equal
 *            size) go through conv_im2col -> one GEMM per chunk (batched over groups) ->
 *            conv_transpose01 to NCHW with the bias. Backward data is
 *            the transposed GEMM and conv_col2im; backward filter accumulates col * dy^T over
 *            the chunks (beta = 1 after the first) and transposes the result. With nb == 1 the
 *            GEMM reads and writes the NCHW tensors in place, and a 1x1 stride-1 unpadded
 *            kernel uses x as the column matrix.
 *
 * The GEMM is the backend's own GEMM op (be->ops[KILN_OP_GEMM]): kiln's kernel on the opencl
 * backend (kiln_cl_gemm -> kiln_gemm_enqueue), CLBlast on the clblast backend, so the latter
 * reuses this file for the shapes CLBlast's convolution routines cannot express. The
 * workspace is a buffer created per call and released after its last use is enqueued (OpenCL
 * keeps it alive until those commands finish); it is never the shared scratch, which the GEMM
 * itself uses for packing. */
#include <stdlib.h>
#include <string.h>

#include "cl-ops.h"

/* Bytes of column matrix + staging per chunk of images; a single image may exceed it. A
   small workspace costs little GEMM efficiency (a chunk still has thousands of columns) and
   keeps the page faults of a freshly created buffer cheap: at 4 MiB a per-call buffer is as
   fast as a cached one on PoCL, at 16 MiB it cost about 20% of a VGG layer. */
#ifndef KILN_CONV_WORKSPACE
#define KILN_CONV_WORKSPACE ((size_t)4 << 20)
#endif
/* Must match conv.cl's DIRECT_OB default (the kernels are built without options). */
#define KILN_CONV_DIRECT_OB 8
#define KILN_CONV_DIRECT_PX 4

typedef kiln_cl_conv_geom geom;

static cl_int16 geo_arg(const geom *g, size_t nb) {
    cl_int16 v;
    const size_t f[16] = {g->c,
                          g->h,
                          g->w,
                          g->kh,
                          g->kw,
                          g->oh,
                          g->ow,
                          (size_t)g->p.stride_h,
                          (size_t)g->p.stride_w,
                          (size_t)g->p.pad_t,
                          (size_t)g->p.pad_l,
                          (size_t)g->p.dil_h,
                          (size_t)g->p.dil_w,
                          g->o,
                          g->groups,
                          nb};
    for (int i = 0; i < 16; i++) v.s[i] = (cl_int)f[i];
    return v;
}

static int is_pointwise(const geom *g) {
    return g->kh == 1 && g->kw == 1 && g->p.stride_h == 1 && g->p.stride_w == 1 && !g->p.pad_t &&
           !g->p.pad_b && !g->p.pad_l && !g->p.pad_r;
}

typedef kiln_cl_mat mat;

/* A device buffer that only kernels write. */
static kiln_status new_buffer(kiln_backend_t be, size_t bytes, cl_mem *out) {
    kiln_status st = kiln_cl_workspace(kiln_cl(be), bytes, out);
    if (st) kiln_error_append(" (conv workspace on %s)", be->device.name);
    return st;
}

static kiln_status kernel(kiln_backend_t be, const char *name, cl_kernel *k) {
    return kiln_cl_get_kernel(kiln_cl(be), "conv.cl", name, "", k);
}

static kiln_status im2col(kiln_backend_t be, const geom *g, size_t nb, cl_mem x, size_t x_off,
                          cl_mem col, size_t col_off) {
    cl_kernel k;
    cl_ulong xo = x_off, co = col_off;
    cl_int16 geo = geo_arg(g, nb);
    kiln_status st;
    if ((st = kernel(be, "conv_im2col", &k)) ||
        (st = kiln_cl_args(k, "conv_im2col", 5, sizeof x, &x, sizeof xo, &xo, sizeof col, &col,
                           sizeof co, &co, sizeof geo, &geo)))
        return st;
    return kiln_cl_conv_launch(be, k, "conv_im2col", g->oh, g->c * g->kh * g->kw, nb);
}

static kiln_status col2im(kiln_backend_t be, const geom *g, size_t nb, cl_mem col, size_t col_off,
                          cl_mem dx, size_t dx_off) {
    cl_kernel k;
    cl_ulong co = col_off, xo = dx_off;
    cl_int16 geo = geo_arg(g, nb);
    kiln_status st;
    if ((st = kernel(be, "conv_col2im", &k)) ||
        (st = kiln_cl_args(k, "conv_col2im", 5, sizeof col, &col, sizeof co, &co, sizeof dx, &dx,
                           sizeof xo, &xo, sizeof geo, &geo)))
        return st;
    return kiln_cl_conv_launch(be, k, "conv_col2im", g->h, g->c, nb);
}

/* dst[j][i][p] = src[i][j][p] (+ bias[i]); bias may be NULL. */
static kiln_status transpose01(kiln_backend_t be, cl_mem src, size_t src_off, cl_mem dst,
                               size_t dst_off, const kiln_tensor *bias, size_t d0, size_t d1,
                               size_t plane) {
    cl_kernel k;
    cl_ulong so = src_off, dof = dst_off, bo = bias ? kiln_cl_off(bias) : 0;
    cl_mem bm = bias ? kiln_cl_mem(bias) : src;
    cl_int has = bias != NULL;
    cl_uint a = (cl_uint)d0, b = (cl_uint)d1, pl = (cl_uint)plane;
    kiln_status st;
    if ((st = kernel(be, "conv_transpose01", &k)) ||
        (st = kiln_cl_args(k, "conv_transpose01", 10, sizeof src, &src, sizeof so, &so, sizeof dst,
                           &dst, sizeof dof, &dof, sizeof bm, &bm, sizeof bo, &bo, sizeof has, &has,
                           sizeof a, &a, sizeof b, &b, sizeof pl, &pl)))
        return st;
    return kiln_cl_conv_launch(be, k, "conv_transpose01", plane, d1, d0);
}

/* The per-call workspace: col (k*groups rows x nb*ohw), then staging (o x nb*ohw, only when
   nb > 1), then `extra` elements for the caller. */
typedef struct {
    cl_mem mem;
    size_t nb;    /* images per chunk */
    size_t stage; /* element offsets of the staging and extra areas */
    size_t extra;
} workspace;

static kiln_status workspace_init(kiln_backend_t be, const geom *g, int need_col, size_t extra,
                                  workspace *ws) {
    size_t col_per = need_col ? g->k * g->groups * g->ohw : 0, stage_per = g->o * g->ohw;
    size_t per_image = (col_per + stage_per) * sizeof(float);
    size_t nb = per_image ? KILN_CONV_WORKSPACE / per_image : g->n;
    nb = nb < 1 ? 1 : nb > g->n ? g->n : nb;
    /* Chunks of equal size: 31 + 1 images left a GEMM of 9 columns that took more than half
       the pass (AlexNet's 256 -> 256 layer on 3x3 maps at batch 32 on PoCL: 12 ms forward
       against 5.5 in two chunks of 16). */
    size_t chunks = (g->n + nb - 1) / nb;
    nb = (g->n + chunks - 1) / chunks;
    ws->mem = NULL;
    ws->nb = nb;
    ws->stage = col_per * nb;
    ws->extra = ws->stage + (nb > 1 ? stage_per * nb : 0);
    size_t bytes = (ws->extra + extra) * sizeof(float);
    return bytes ? new_buffer(be, bytes, &ws->mem) : KILN_OK;
}

static void workspace_free(workspace *ws) {
    if (ws->mem) clReleaseMemObject(ws->mem);
}

static kiln_status conv_direct(kiln_backend_t be, const geom *g, const kiln_tensor *x,
                               const kiln_tensor *w, const kiln_tensor *bias, kiln_tensor *y) {
    cl_kernel k;
    cl_mem xm = kiln_cl_mem(x), wm = kiln_cl_mem(w), ym = kiln_cl_mem(y);
    cl_mem bm = bias ? kiln_cl_mem(bias) : wm;
    cl_ulong xo = kiln_cl_off(x), wo = kiln_cl_off(w), yo = kiln_cl_off(y);
    cl_ulong bo = bias ? kiln_cl_off(bias) : 0;
    cl_int has = bias != NULL;
    cl_int nblk = (cl_int)((g->og + KILN_CONV_DIRECT_OB - 1) / KILN_CONV_DIRECT_OB);
    cl_int nimg = (cl_int)g->n;
    cl_int16 geo = geo_arg(g, 1);
    kiln_status st;
    if ((st = kernel(be, "conv_direct", &k)) ||
        (st = kiln_cl_args(k, "conv_direct", 12, sizeof xm, &xm, sizeof xo, &xo, sizeof wm, &wm,
                           sizeof wo, &wo, sizeof bm, &bm, sizeof bo, &bo, sizeof has, &has,
                           sizeof ym, &ym, sizeof yo, &yo, sizeof geo, &geo, sizeof nblk, &nblk,
                           sizeof nimg, &nimg)))
        return st;
    return kiln_cl_conv_launch(be, k, "conv_direct",
                               (g->ow + KILN_CONV_DIRECT_PX - 1) / KILN_CONV_DIRECT_PX, g->oh,
                               g->n * g->groups * (size_t)nblk);
}

static kiln_status gemm_forward(kiln_backend_t be, const geom *g, const kiln_tensor *x,
                                const kiln_tensor *w, const kiln_tensor *bias, kiln_tensor *y) {
    workspace ws;
    int pointwise = is_pointwise(g);
    kiln_status st = workspace_init(be, g, !pointwise || g->n > 1, 0, &ws);
    if (st) return st;
    cl_mem xm = kiln_cl_mem(x), ym = kiln_cl_mem(y);
    size_t xo = kiln_cl_off(x), yo = kiln_cl_off(y), chw = g->c * g->h * g->w, ohw = g->ohw;
    for (size_t n0 = 0; n0 < g->n && !st; n0 += ws.nb) {
        size_t nb = g->n - n0 < ws.nb ? g->n - n0 : ws.nb, cols = nb * ohw;
        mat col = {ws.mem, 0, cols, g->k * cols};
        if (pointwise && nb == 1)
            col = (mat){xm, xo + n0 * chw, ohw, g->k * ohw};
        else if ((st = im2col(be, g, nb, xm, xo + n0 * chw, ws.mem, 0)))
            break;
        mat out = nb > 1 ? (mat){ws.mem, ws.stage, cols, g->og * cols}
                         : (mat){ym, yo + n0 * g->o * ohw, ohw, g->og * ohw};
        mat wt = {kiln_cl_mem(w), kiln_cl_off(w), g->k, g->og * g->k};
        if ((st = kiln_cl_conv_gemm(be, 0, 0, g->og, cols, g->k, g->groups, 0.0f, wt, col, out)))
            break;
        if (nb > 1 || bias)
            st = transpose01(be, out.mem, out.off, ym, yo + n0 * g->o * ohw, bias, g->o, nb, ohw);
    }
    workspace_free(&ws);
    return st;
}

kiln_status kiln_cl_conv2d(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0], *w = dst->src[1], *bias = dst->src[2];
    geom g;
    kiln_cl_conv_decode(dst, x, w, dst, &g);
    if (!g.n) return KILN_OK;
    kiln_cl_conv_tune tn;
    kiln_status st = kiln_cl_conv_tune_get(be, &tn);
    if (st) return st;
    if (tn.winograd > 0 && kiln_cl_winograd_applies(&g, 0))
        return kiln_cl_winograd_forward(be, &g, tn.winograd, x, w, bias, dst);
    if (g.cg <= tn.direct_max_c) return conv_direct(be, &g, x, w, bias, dst);
    int form;
    if ((st = kiln_cl_conv_tile_form(be, &g, KILN_CL_TILE_FORWARD, &tn, &form))) return st;
    if (form >= 0) return kiln_cl_conv_tile_forward(be, &g, form, x, w, bias, dst);
    return gemm_forward(be, &g, x, w, bias, dst);
}

/* dy of images [n0, n0+nb) as [O][nb*ohw]: in place for one image, else gathered. */
static kiln_status stage_dy(kiln_backend_t be, const geom *g, const kiln_tensor *dy,
                            const workspace *ws, size_t n0, size_t nb, mat *out) {
    size_t cols = nb * g->ohw, off = kiln_cl_off(dy) + n0 * g->o * g->ohw;
    if (nb == 1) {
        *out = (mat){kiln_cl_mem(dy), off, cols, g->og * cols};
        return KILN_OK;
    }
    *out = (mat){ws->mem, ws->stage, cols, g->og * cols};
    return transpose01(be, kiln_cl_mem(dy), off, ws->mem, ws->stage, NULL, nb, g->o, g->ohw);
}

static kiln_status gemm_backward_data(kiln_backend_t be, const geom *g, const kiln_tensor *dy,
                                      const kiln_tensor *w, kiln_tensor *dx) {
    workspace ws;
    int pointwise = is_pointwise(g);
    kiln_status st = workspace_init(be, g, !pointwise || g->n > 1, 0, &ws);
    if (st) return st;
    cl_mem dxm = kiln_cl_mem(dx);
    size_t dxo = kiln_cl_off(dx), chw = g->c * g->h * g->w;
    for (size_t n0 = 0; n0 < g->n && !st; n0 += ws.nb) {
        size_t nb = g->n - n0 < ws.nb ? g->n - n0 : ws.nb, cols = nb * g->ohw;
        mat dyc;
        if ((st = stage_dy(be, g, dy, &ws, n0, nb, &dyc))) break;
        int direct = pointwise && nb == 1;
        mat col = direct ? (mat){dxm, dxo + n0 * chw, cols, g->k * cols}
                         : (mat){ws.mem, 0, cols, g->k * cols};
        mat wt = {kiln_cl_mem(w), kiln_cl_off(w), g->k, g->og * g->k};
        if ((st = kiln_cl_conv_gemm(be, 1, 0, g->k, cols, g->og, g->groups, 0.0f, wt, dyc, col)))
            break;
        if (!direct) st = col2im(be, g, nb, ws.mem, 0, dxm, dxo + n0 * chw);
    }
    workspace_free(&ws);
    return st;
}

kiln_status kiln_cl_conv2d_bwd_data(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *dy = dst->src[0], *w = dst->src[1];
    geom g;
    kiln_cl_conv_decode(dst, dst, w, dy, &g);
    if (!g.n) return KILN_OK;
    kiln_cl_conv_tune tn;
    kiln_status st = kiln_cl_conv_tune_get(be, &tn);
    if (st) return st;
    if (tn.winograd > 0 && kiln_cl_winograd_applies(&g, 1))
        return kiln_cl_winograd_backward_data(be, &g, tn.winograd, dy, w, dst);
    int form;
    if ((st = kiln_cl_conv_tile_form(be, &g, KILN_CL_TILE_BACKWARD_DATA, &tn, &form))) return st;
    if (form >= 0) return kiln_cl_conv_tile_backward_data(be, &g, form, dy, w, dst);
    return gemm_backward_data(be, &g, dy, w, dst);
}

/* dW = sum over images of dy col^T, computed transposed, dW^T = col dy^T, so that the GEMM
   packs (transposes) dy rather than the column matrix, which is KH*KW*C/O times larger; the
   small dW^T is transposed into place at the end. */
kiln_status kiln_cl_conv2d_bwd_filter(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0], *dy = dst->src[1];
    geom g;
    kiln_cl_conv_decode(dst, x, dst, dy, &g);
    cl_mem dwm = kiln_cl_mem(dst);
    if (!g.n) {
        cl_float zero = 0.0f;
        cl_int err = clEnqueueFillBuffer(kiln_cl(be)->queue, dwm, &zero, sizeof zero, dst->offset,
                                         g.o * g.k * sizeof(float), 0, NULL, NULL);
        return err == CL_SUCCESS ? KILN_OK : kiln_cl_fail(err, "conv2d_bwd_filter: zero fill");
    }
    kiln_cl_conv_tune tn;
    kiln_status st = kiln_cl_conv_tune_get(be, &tn);
    if (st) return st;
    if (tn.winograd > 0 && kiln_cl_winograd_applies(&g, 0))
        return kiln_cl_winograd_backward_filter(be, &g, x, dy, dst);
    int form;
    if ((st = kiln_cl_conv_tile_form(be, &g, KILN_CL_TILE_BACKWARD_FILTER, &tn, &form))) return st;
    if (form >= 0) return kiln_cl_conv_tile_backward_filter(be, &g, form, x, dy, dst);
    workspace ws;
    int pointwise = is_pointwise(&g);
    if ((st = workspace_init(be, &g, !pointwise || g.n > 1, g.o * g.k, &ws))) return st;
    cl_mem xm = kiln_cl_mem(x);
    size_t xo = kiln_cl_off(x), chw = g.c * g.h * g.w;
    mat dwt = {ws.mem, ws.extra, g.og, g.k * g.og};
    for (size_t n0 = 0; n0 < g.n && !st; n0 += ws.nb) {
        size_t nb = g.n - n0 < ws.nb ? g.n - n0 : ws.nb, cols = nb * g.ohw;
        mat col = {ws.mem, 0, cols, g.k * cols}, dyc;
        if (pointwise && nb == 1)
            col = (mat){xm, xo + n0 * chw, cols, g.k * cols};
        else if ((st = im2col(be, &g, nb, xm, xo + n0 * chw, ws.mem, 0)))
            break;
        if ((st = stage_dy(be, &g, dy, &ws, n0, nb, &dyc))) break;
        st =
            kiln_cl_conv_gemm(be, 0, 1, g.k, g.og, cols, g.groups, n0 ? 1.0f : 0.0f, col, dyc, dwt);
    }
    for (size_t gi = 0; gi < g.groups && !st; gi++)
        st = transpose01(be, ws.mem, ws.extra + gi * g.k * g.og, dwm,
                         kiln_cl_off(dst) + gi * g.og * g.k, NULL, g.k, g.og, 1);
    workspace_free(&ws);
    return st;
}

/* im2col + GEMM as a candidate of auto where the tiled form is the default (the CPU forms):
   on maps of a few pixels per image the GEMM over all the images' columns at once beats the
   tiled form's lanes (AlexNet's 3x3 maps at 64x64 input, 192-384 channels, batch 32, on a
   2-core Zen 3: 3.3-5.9 ms per pass against the edge form's 4.0-7.9 and the tiled form's
   4.3-10.5), while on maps of 14x14 and more it loses 2-4x. Not for the filter gradient,
   where it lost on every layer measured. Not offered where KILN_TUNE_CONV names TILE (the
   choice is then the user's). */
static int gemm_supports(kiln_backend_t be, const kiln_tensor *dst, int pass) {
    kiln_cl_conv_tune tn;
    geom g;
    return kiln_cl_conv_tile_runs(be, dst, pass, &tn, &g) && !tn.tile_set &&
           !(pass == KILN_CL_TILE_FORWARD && g.cg <= tn.direct_max_c);
}

int kiln_cl_supports_conv2d_gemm(kiln_backend_t be, const kiln_tensor *dst) {
    return gemm_supports(be, dst, KILN_CL_TILE_FORWARD);
}

int kiln_cl_supports_conv2d_bwd_data_gemm(kiln_backend_t be, const kiln_tensor *dst) {
    return gemm_supports(be, dst, KILN_CL_TILE_BACKWARD_DATA);
}

kiln_status kiln_cl_conv2d_gemm(kiln_backend_t be, kiln_tensor *dst) {
    geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_FORWARD, &g);
    if (!g.n) return KILN_OK;
    return gemm_forward(be, &g, dst->src[0], dst->src[1], dst->src[2], dst);
}

kiln_status kiln_cl_conv2d_bwd_data_gemm(kiln_backend_t be, kiln_tensor *dst) {
    geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_BACKWARD_DATA, &g);
    if (!g.n) return KILN_OK;
    return gemm_backward_data(be, &g, dst->src[0], dst->src[1], dst);
}

kiln_status kiln_cl_bias_grad(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *dy = dst->src[0];
    cl_uint n = (cl_uint)dy->shape[0], c = (cl_uint)dy->shape[1];
    cl_ulong plane = 1;
    for (int d = 2; d < dy->ndim; d++) plane *= (cl_ulong)dy->shape[d];
    cl_mem dym = kiln_cl_mem(dy), dbm = kiln_cl_mem(dst), part = dbm;
    cl_ulong dyo = kiln_cl_off(dy), dbo = kiln_cl_off(dst), po = dbo;
    kiln_cl_conv_tune tn;
    kiln_status st = kiln_cl_conv_tune_get(be, &tn);
    if (st) return st;
    cl_kernel k;
    /* The CPU algorithms (TILE) include the one-stage form, where a work-item's loops over
       all its planes fit the device. */
    unsigned long budget = 0;
    if (tn.tile && (st = kiln_cl_loop_budget(kiln_cl(be), &budget))) return st;
    if (tn.tile && n > 0 && (!budget || (cl_ulong)n * (plane / 4 + 5) <= budget)) {
        size_t global[3] = {c, 1, 1}, local[3] = {1, 1, 1};
        if ((st = kernel(be, "bias_grad_planes", &k)) ||
            (st = kiln_cl_args(k, "bias_grad_planes", 7, sizeof dym, &dym, sizeof dyo, &dyo,
                               sizeof dbm, &dbm, sizeof dbo, &dbo, sizeof c, &c, sizeof n, &n,
                               sizeof plane, &plane)))
            return st;
        return kiln_cl_launch(kiln_cl(be), k, "bias_grad_planes", 1, global, local);
    }
    /* One image: the row sums are the result. */
    if (n > 1) {
        if ((st = new_buffer(be, (size_t)n * c * sizeof(float), &part))) return st;
        po = 0;
    }
    if (!(st = kernel(be, "bias_grad_rows", &k)) &&
        !(st = kiln_cl_args(k, "bias_grad_rows", 7, sizeof dym, &dym, sizeof dyo, &dyo, sizeof part,
                            &part, sizeof po, &po, sizeof c, &c, sizeof n, &n, sizeof plane,
                            &plane)))
        st = kiln_cl_conv_launch(be, k, "bias_grad_rows", c, n, 1);
    if (!st && n > 1 && !(st = kernel(be, "bias_grad_cols", &k)) &&
        !(st = kiln_cl_args(k, "bias_grad_cols", 6, sizeof part, &part, sizeof po, &po, sizeof dbm,
                            &dbm, sizeof dbo, &dbo, sizeof c, &c, sizeof n, &n)))
        st = kiln_cl_conv_launch(be, k, "bias_grad_cols", c, 1, 1);
    if (n > 1) clReleaseMemObject(part);
    if (!st && n == 0) {
        cl_float zero = 0.0f;
        cl_int err = clEnqueueFillBuffer(kiln_cl(be)->queue, dbm, &zero, sizeof zero, dst->offset,
                                         (size_t)c * sizeof(float), 0, NULL, NULL);
        if (err != CL_SUCCESS) st = kiln_cl_fail(err, "bias_grad: zero fill");
    }
    return st;
}
