/* The opencl backend's Winograd convolutions (kernels/winograd.cl) of 3x3, stride-1,
 * undilated, ungrouped convolutions: F(2x2, 3x3) forward, backward data and backward filter,
 * and F(4x4, 3x3) forward and backward data (the wino4_ kernels: 6x6 transforms, 36 GEMMs,
 * otherwise the same). The forward (and backward data, a forward of dy with the flipped
 * filter) runs as
 *
 *   wino_filter (U, 16 x Oe x Ce) -> per chunk of nb images: wino_input (V, 16 x Ce x P)
 *   -> the backend's GEMM batched over the 16 transform positions (M = U V, 16 x Oe x P)
 *   -> wino_output (A^T M A + bias into NCHW).
 *
 * The backward filter transforms x (V) and dy (Q = A dY A^T) per chunk, accumulates
 * dU = Q V^T in 16 GEMMs over the tiles, and applies G^T dU G once at the end.
 *
 * The GEMMs do 16 multiply-adds per 2x2 outputs and channel pair where the direct form does
 * 36, at the price of three memory-bound transforms; auto weighs the result per shape.
 *
 * Error: the transforms' coefficients are 0, +-1/2 and +-1, so U, V and A^T M A each add a few
 * roundings of values up to 2-4x the largest input. Relative to the direct sum the error of
 * an output grows by a small constant factor (below 10x at C <= 512) rather than with the
 * reduction length, well inside the 1e-5 normalised error the op tests allow. F(4x4)'s
 * coefficients reach 8 and its sums have 6 terms, so its error is larger by one to two orders
 * of magnitude, still far inside that bound. */
#include "cl-ops.h"

/* Bytes of V and M per chunk of images (U comes on top); a single image may exceed it. */
#ifndef KILN_WINO_WORKSPACE
#define KILN_WINO_WORKSPACE ((size_t)8 << 20)
#endif

/* The kernels of one tile size. */
typedef struct {
    const char *filter, *input, *output;
} wino_kernels;
static const wino_kernels F2 = {"wino_filter", "wino_input", "wino_output"};
static const wino_kernels F4 = {"wino4_filter", "wino4_input", "wino4_output"};

/* One Winograd convolution "y = x (*) g" with ce input and oe output channels: input planes
   h x w read through padding (pt, pl), output planes oh x ow. */
typedef struct {
    const wino_kernels *k;
    size_t n, ce, oe, h, w, oh, ow, tiles_h, tiles_w, tiles;
    size_t a2; /* transform positions: 16 for F(2x2), 36 for F(4x4) */
    long pt, pl;
    int bwd; /* the filter is the forward's, flipped and transposed */
} wino_geom;

int kiln_cl_winograd_applies(const kiln_cl_conv_geom *g, int bwd) {
    const kiln_conv2d_params *p = &g->p;
    if (g->kh != 3 || g->kw != 3 || p->stride_h != 1 || p->stride_w != 1 || p->dil_h != 1 ||
        p->dil_w != 1 || g->groups != 1)
        return 0;
    /* Backward data reads dy through padding 2 - pad. */
    if (bwd && (p->pad_t > 2 || p->pad_l > 2)) return 0;
    /* The kernels index planes and tiles with int. */
    size_t big = g->n * (g->c > g->o ? g->c : g->o) * (g->h + 2) * (g->w + 2);
    return big < ((size_t)1 << 31) / 16;
}

static wino_geom make_geom(const kiln_cl_conv_geom *g, int bwd, int m) {
    wino_geom t = {.k = m == 4 ? &F4 : &F2, .n = g->n, .bwd = bwd, .a2 = (size_t)(m + 2) * (m + 2)};
    if (!bwd) {
        t.ce = g->c, t.oe = g->o, t.h = g->h, t.w = g->w, t.oh = g->oh, t.ow = g->ow;
        t.pt = g->p.pad_t, t.pl = g->p.pad_l;
    } else {
        t.ce = g->o, t.oe = g->c, t.h = g->oh, t.w = g->ow, t.oh = g->h, t.ow = g->w;
        t.pt = 2 - (long)g->p.pad_t, t.pl = 2 - (long)g->p.pad_l;
    }
    t.tiles_h = (t.oh + m - 1) / m;
    t.tiles_w = (t.ow + m - 1) / m;
    t.tiles = t.tiles_h * t.tiles_w;
    return t;
}

static kiln_status kernel(kiln_backend_t be, const char *name, cl_kernel *k) {
    return kiln_cl_get_kernel(kiln_cl(be), "winograd.cl", name, "", k);
}

/* Images per chunk so that V and the GEMM's other operand (M or Q, 16 x Oe x tiles each) stay
   within the workspace budget, and the workspace: the u_elems of U (or dU) first, then the
   chunk's. */
static kiln_status workspace(kiln_backend_t be, const wino_geom *t, size_t *nb, cl_mem *ws) {
    const size_t u_elems = t->a2 * t->oe * t->ce, per_image = t->a2 * t->tiles * (t->ce + t->oe);
    size_t n = KILN_WINO_WORKSPACE / (per_image * sizeof(float));
    *nb = n < 1 ? 1 : n > t->n ? t->n : n;
    kiln_status st =
        kiln_cl_workspace(kiln_cl(be), (u_elems + *nb * per_image) * sizeof(float), ws);
    if (st) kiln_error_append(" (winograd workspace on %s)", be->device.name);
    return st;
}

/* V = B^T d B of `cnt` images of x from element xo, into ws at vo (cols = cnt * tiles). */
static kiln_status input_transform(kiln_backend_t be, const wino_geom *t, cl_mem xm, cl_ulong xo,
                                   cl_mem ws, cl_ulong vo, size_t cnt) {
    cl_kernel k;
    const char *name = t->k->input;
    cl_int ce = (cl_int)t->ce, h = (cl_int)t->h, wd = (cl_int)t->w, pt = (cl_int)t->pt,
           pl = (cl_int)t->pl, tw = (cl_int)t->tiles_w, tiles = (cl_int)t->tiles,
           c = (cl_int)(cnt * t->tiles);
    kiln_status st = kernel(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 12, sizeof xm, &xm, sizeof xo, &xo, sizeof ws, &ws, sizeof vo,
                          &vo, sizeof ce, &ce, sizeof h, &h, sizeof wd, &wd, sizeof pt, &pt,
                          sizeof pl, &pl, sizeof tw, &tw, sizeof tiles, &tiles, sizeof c, &c);
    return st ? st : kiln_cl_conv_launch(be, k, name, t->tiles, t->ce, cnt);
}

static kiln_status run(kiln_backend_t be, const wino_geom *t, const kiln_tensor *x,
                       const kiln_tensor *w, const kiln_tensor *bias, kiln_tensor *y) {
    const size_t u_elems = t->a2 * t->oe * t->ce;
    size_t nb;
    cl_mem ws;
    kiln_status st = workspace(be, t, &nb, &ws);
    if (st) return st;
    cl_kernel kf, ko;
    const char *fname = t->k->filter, *oname = t->k->output;
    cl_mem wm = kiln_cl_mem(w), xm = kiln_cl_mem(x), ym = kiln_cl_mem(y);
    cl_mem bm = bias ? kiln_cl_mem(bias) : ym;
    cl_ulong wo = kiln_cl_off(w), uo = 0, bo = bias ? kiln_cl_off(bias) : 0;
    cl_int oe = (cl_int)t->oe, ce = (cl_int)t->ce, bwd = t->bwd, has = bias != NULL;
    cl_int oh = (cl_int)t->oh, ow = (cl_int)t->ow, tw = (cl_int)t->tiles_w;
    cl_int tiles = (cl_int)t->tiles;
    st = kernel(be, fname, &kf);
    if (!st) st = kernel(be, oname, &ko);
    if (!st)
        st = kiln_cl_args(kf, fname, 7, sizeof wm, &wm, sizeof wo, &wo, sizeof ws, &ws, sizeof uo,
                          &uo, sizeof oe, &oe, sizeof ce, &ce, sizeof bwd, &bwd);
    if (!st) st = kiln_cl_conv_launch(be, kf, fname, t->ce, t->oe, 1);
    const size_t in_image = t->ce * t->h * t->w, out_image = t->oe * t->oh * t->ow;
    for (size_t n0 = 0; n0 < t->n && !st; n0 += nb) {
        size_t cnt = t->n - n0 < nb ? t->n - n0 : nb, cols = cnt * t->tiles;
        cl_ulong xo = kiln_cl_off(x) + n0 * in_image, yo = kiln_cl_off(y) + n0 * out_image;
        cl_ulong vo = u_elems, mo = u_elems + t->a2 * t->ce * cols;
        cl_int c = (cl_int)cols;
        if ((st = input_transform(be, t, xm, xo, ws, vo, cnt))) break;
        kiln_cl_mat u = {ws, 0, t->ce, t->oe * t->ce};
        kiln_cl_mat v = {ws, (size_t)vo, cols, t->ce * cols};
        kiln_cl_mat m = {ws, (size_t)mo, cols, t->oe * cols};
        if ((st = kiln_cl_conv_gemm(be, 0, 0, t->oe, cols, t->ce, t->a2, 0.0f, u, v, m))) break;
        if ((st = kiln_cl_args(ko, oname, 13, sizeof ws, &ws, sizeof mo, &mo, sizeof ym, &ym,
                               sizeof yo, &yo, sizeof bm, &bm, sizeof bo, &bo, sizeof has, &has,
                               sizeof oe, &oe, sizeof oh, &oh, sizeof ow, &ow, sizeof tw, &tw,
                               sizeof tiles, &tiles, sizeof c, &c)))
            break;
        st = kiln_cl_conv_launch(be, ko, oname, t->tiles, t->oe, cnt);
    }
    clReleaseMemObject(ws);
    return st;
}

kiln_status kiln_cl_winograd_forward(kiln_backend_t be, const kiln_cl_conv_geom *g, int m,
                                     const kiln_tensor *x, const kiln_tensor *w,
                                     const kiln_tensor *bias, kiln_tensor *y) {
    wino_geom t = make_geom(g, 0, m);
    return run(be, &t, x, w, bias, y);
}

kiln_status kiln_cl_winograd_backward_data(kiln_backend_t be, const kiln_cl_conv_geom *g, int m,
                                           const kiln_tensor *dy, const kiln_tensor *w,
                                           kiln_tensor *dx) {
    wino_geom t = make_geom(g, 1, m);
    return run(be, &t, dy, w, NULL, dx);
}

kiln_status kiln_cl_winograd_backward_filter(kiln_backend_t be, const kiln_cl_conv_geom *g,
                                             const kiln_tensor *x, const kiln_tensor *dy,
                                             kiln_tensor *dw) {
    wino_geom t = make_geom(g, 0, 2);
    const size_t u_elems = t.a2 * t.oe * t.ce;
    size_t nb;
    cl_mem ws;
    kiln_status st = workspace(be, &t, &nb, &ws);
    if (st) return st;
    cl_kernel kq, kg;
    const char *qname = "wino_grad_output", *gname = "wino_filter_grad";
    cl_mem xm = kiln_cl_mem(x), dym = kiln_cl_mem(dy), dwm = kiln_cl_mem(dw);
    cl_int oe = (cl_int)t.oe, ce = (cl_int)t.ce, oh = (cl_int)t.oh, ow = (cl_int)t.ow;
    cl_int tw = (cl_int)t.tiles_w, tiles = (cl_int)t.tiles;
    st = kernel(be, qname, &kq);
    if (!st) st = kernel(be, gname, &kg);
    const size_t in_image = t.ce * t.h * t.w, out_image = t.oe * t.oh * t.ow;
    for (size_t n0 = 0; n0 < t.n && !st; n0 += nb) {
        size_t cnt = t.n - n0 < nb ? t.n - n0 : nb, cols = cnt * t.tiles;
        cl_ulong xo = kiln_cl_off(x) + n0 * in_image, dyo = kiln_cl_off(dy) + n0 * out_image;
        cl_ulong vo = u_elems, qo = u_elems + t.a2 * t.ce * cols;
        cl_int c = (cl_int)cols;
        if ((st = input_transform(be, &t, xm, xo, ws, vo, cnt))) break;
        if ((st = kiln_cl_args(kq, qname, 10, sizeof dym, &dym, sizeof dyo, &dyo, sizeof ws, &ws,
                               sizeof qo, &qo, sizeof oe, &oe, sizeof oh, &oh, sizeof ow, &ow,
                               sizeof tw, &tw, sizeof tiles, &tiles, sizeof c, &c)) ||
            (st = kiln_cl_conv_launch(be, kq, qname, t.tiles, t.oe, cnt)))
            break;
        /* dU[e] (+)= Q[e] V[e]^T: the sum over this chunk's tiles. */
        kiln_cl_mat q = {ws, (size_t)qo, cols, t.oe * cols};
        kiln_cl_mat v = {ws, (size_t)vo, cols, t.ce * cols};
        kiln_cl_mat du = {ws, 0, t.ce, t.oe * t.ce};
        if ((st = kiln_cl_conv_gemm(be, 0, 1, t.oe, t.ce, cols, t.a2, n0 ? 1.0f : 0.0f, q, v, du)))
            break;
    }
    cl_ulong duo = 0, dwo = kiln_cl_off(dw);
    if (!st)
        st = kiln_cl_args(kg, gname, 6, sizeof ws, &ws, sizeof duo, &duo, sizeof dwm, &dwm,
                          sizeof dwo, &dwo, sizeof oe, &oe, sizeof ce, &ce);
    if (!st) st = kiln_cl_conv_launch(be, kg, gname, t.ce, t.oe, 1);
    clReleaseMemObject(ws);
    return st;
}

/* As candidates of auto: the tensor's geometry, and not switched off by WINOGRAD=0. */
static int supports(kiln_backend_t be, const kiln_tensor *dst, int pass) {
    kiln_cl_conv_tune tn;
    if (kiln_cl_conv_tune_get(be, &tn) || !tn.winograd) return 0;
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, pass, &g);
    return kiln_cl_winograd_applies(&g, pass == KILN_CL_TILE_BACKWARD_DATA);
}

int kiln_cl_supports_conv2d_winograd(kiln_backend_t be, const kiln_tensor *dst) {
    return supports(be, dst, KILN_CL_TILE_FORWARD);
}

int kiln_cl_supports_conv2d_bwd_data_winograd(kiln_backend_t be, const kiln_tensor *dst) {
    return supports(be, dst, KILN_CL_TILE_BACKWARD_DATA);
}

int kiln_cl_supports_conv2d_bwd_filter_winograd(kiln_backend_t be, const kiln_tensor *dst) {
    return supports(be, dst, KILN_CL_TILE_BACKWARD_FILTER);
}

static kiln_status forward_op(kiln_backend_t be, kiln_tensor *dst, int m) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_FORWARD, &g);
    if (!g.n) return KILN_OK;
    return kiln_cl_winograd_forward(be, &g, m, dst->src[0], dst->src[1], dst->src[2], dst);
}

static kiln_status bwd_data_op(kiln_backend_t be, kiln_tensor *dst, int m) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_BACKWARD_DATA, &g);
    if (!g.n) return KILN_OK;
    return kiln_cl_winograd_backward_data(be, &g, m, dst->src[0], dst->src[1], dst);
}

kiln_status kiln_cl_conv2d_winograd(kiln_backend_t be, kiln_tensor *dst) {
    return forward_op(be, dst, 2);
}

kiln_status kiln_cl_conv2d_winograd4(kiln_backend_t be, kiln_tensor *dst) {
    return forward_op(be, dst, 4);
}

kiln_status kiln_cl_conv2d_bwd_data_winograd(kiln_backend_t be, kiln_tensor *dst) {
    return bwd_data_op(be, dst, 2);
}

kiln_status kiln_cl_conv2d_bwd_data_winograd4(kiln_backend_t be, kiln_tensor *dst) {
    return bwd_data_op(be, dst, 4);
}

kiln_status kiln_cl_conv2d_bwd_filter_winograd(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_BACKWARD_FILTER, &g);
    /* No images: dW is zero, which the backend's own op writes. */
    if (!g.n) return kiln_cl_conv2d_bwd_filter(be, dst);
    return kiln_cl_winograd_backward_filter(be, &g, dst->src[0], dst->src[1], dst);
}
