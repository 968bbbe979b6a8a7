/* The clblast backend's convolutions: CLBlast's own routines for what they can express,
 * the opencl implementation (kiln_cl_conv2d*, which then runs its GEMMs through CLBlast,
 * the backend's GEMM op) for the rest.
 *
 *   conv2d           CLBlastSconvgemm (per-image im2col + batched GEMM, NCHW in and out),
 *                    the bias as a rank-1 batched GEMM update y[n] += bias * 1^T.
 *   conv2d_bwd_data  CLBlast GEMMs col[n] = W^T dy[n] over a chunk of images, then
 *                    CLBlastScol2im per image (it accumulates, so dx is zeroed first).
 *   conv2d_bwd_filter not here: the opencl implementation runs it (the fallback chain), with
 *                    this backend's GEMM. dW = sum_n dy[n] col[n]^T needs the column matrices
 *                    side by side ([K][n*OH*OW]) to be one GEMM, and CLBlast's im2col writes
 *                    one image's [K][OH*OW] block; per-image GEMMs with K = OH*OW (4 in a deep
 *                    VGG layer at 32x32) would waste CLBlast's tiles. Not being listed also
 *                    keeps auto from timing the same code twice.
 * CLBlast cannot express groups, asymmetric padding or offsets beyond 32 bits: for those shapes
 * (and all shapes when KILN_CLBLAST_CONV=0 at build time) kiln_clblast_supports says no and the
 * backend runs the next implementation in its chain, the opencl one, and reports that one. */
#include <clblast_c.h>
#include <limits.h>
#include <string.h>

#include "../opencl/cl-ops.h"

/* 0: always delegate to the opencl implementation (for comparisons). */
#ifndef KILN_CLBLAST_CONV
#define KILN_CLBLAST_CONV 1
#endif
/* Column-matrix bytes per chunk of images in backward data; one image may exceed it. */
#ifndef KILN_CLBLAST_CONV_WORKSPACE
#define KILN_CLBLAST_CONV_WORKSPACE ((size_t)16 << 20)
#endif

typedef kiln_cl_conv_geom geom;

/* Decodes the geometry; 0 when CLBlast's routines cannot express this convolution (groups,
   asymmetric padding, sizes past its int indexing), which then runs on kiln's kernels. */
static int decode(const kiln_tensor *dst, const kiln_tensor *x, const kiln_tensor *w,
                  const kiln_tensor *y, geom *g) {
    kiln_cl_conv_decode(dst, x, w, y, g);
    /* CLBlast's kernels index with int; keep every tensor and offset well inside. */
    size_t biggest =
        g->n * (g->c * g->h * g->w > g->o * g->ohw ? g->c * g->h * g->w : g->o * g->ohw);
    size_t offs = x->offset / 4 + w->offset / 4 + y->offset / 4;
    return KILN_CLBLAST_CONV && g->n && g->p.groups == 1 && g->p.pad_t == g->p.pad_b &&
           g->p.pad_l == g->p.pad_r && biggest + offs < INT_MAX / 2 &&
           g->k * g->ohw * g->n < INT_MAX / 2;
}

/* The backend asks kiln_clblast_supports first (backend.c sends other tensors down the
   chain); a direct call with such a tensor is an error, never a silent substitute. */
static kiln_status unsupported(kiln_backend_t be, const kiln_tensor *dst) {
    return kiln_error(KILN_UNSUPPORTED,
                      "CLBlast cannot express %s '%s' (groups, asymmetric padding or sizes past "
                      "its int indexing) on %s",
                      kiln_op_name(dst->op), dst->name, be->device.name);
}

int kiln_clblast_supports_conv2d(kiln_backend_t be, const kiln_tensor *dst) {
    geom g;
    return decode(dst, dst->src[0], dst->src[1], dst, &g);
}

int kiln_clblast_supports_conv2d_bwd_data(kiln_backend_t be, const kiln_tensor *dst) {
    geom g;
    return decode(dst, dst, dst->src[1], dst->src[0], &g);
}

static kiln_status clblast_fail(kiln_backend_t be, CLBlastStatusCode s, const char *what,
                                const geom *g) {
    return kiln_error(s == CLBlastOpenCLOutOfResources || s == CLBlastOpenCLOutOfHostMemory
                          ? KILN_OUT_OF_MEMORY
                          : KILN_OPENCL,
                      "CLBlast %s (n=%zu c=%zu %zux%zu o=%zu k=%zux%zu) on %s: status %d%s%s", what,
                      g->n, g->c, g->h, g->w, g->o, g->kh, g->kw, be->device.name, (int)s,
                      (int)s < 0 && (int)s > -1000 ? " " : "",
                      (int)s < 0 && (int)s > -1000 ? kiln_cl_error_name((cl_int)s) : "");
}

static kiln_status new_buffer(kiln_backend_t be, size_t bytes, cl_mem *out) {
    cl_int err;
    *out = clCreateBuffer(kiln_cl(be)->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    return err == CL_SUCCESS ? KILN_OK
                             : kiln_cl_fail(err, "clblast conv: %zu byte workspace", bytes);
}

static kiln_status fill(kiln_backend_t be, cl_mem m, size_t off_elems, size_t n, float v) {
    cl_int err = clEnqueueFillBuffer(kiln_cl(be)->queue, m, &v, sizeof v, off_elems * sizeof v,
                                     n * sizeof v, 0, NULL, NULL);
    return err == CL_SUCCESS ? KILN_OK : kiln_cl_fail(err, "clblast conv: fill");
}

/* y[n] += bias * 1^T for every image: one strided-batched GEMM with k = 1. */
static kiln_status add_bias(kiln_backend_t be, const geom *g, const kiln_tensor *bias,
                            kiln_tensor *y) {
    cl_mem ones;
    kiln_status st = new_buffer(be, g->ohw * sizeof(float), &ones);
    if (st) return st;
    if (!(st = fill(be, ones, 0, g->ohw, 1.0f))) {
        CLBlastStatusCode s = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, g->o, g->ohw, 1, 1.0f,
            kiln_cl_mem(bias), kiln_cl_off(bias), 1, 0, ones, 0, g->ohw, 0, 1.0f, kiln_cl_mem(y),
            kiln_cl_off(y), g->ohw, g->o * g->ohw, g->n, &kiln_cl(be)->queue, NULL);
        if (s != CLBlastSuccess) st = clblast_fail(be, s, "bias update", g);
    }
    clReleaseMemObject(ones);
    return st;
}

kiln_status kiln_clblast_conv2d(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0], *w = dst->src[1], *bias = dst->src[2];
    geom g;
    if (!decode(dst, x, w, dst, &g)) return unsupported(be, dst);
    CLBlastStatusCode s = CLBlastSconvgemm(
        CLBlastKernelModeCrossCorrelation, g.c, g.h, g.w, g.kh, g.kw, (size_t)g.p.pad_t,
        (size_t)g.p.pad_l, (size_t)g.p.stride_h, (size_t)g.p.stride_w, (size_t)g.p.dil_h,
        (size_t)g.p.dil_w, g.o, g.n, kiln_cl_mem(x), kiln_cl_off(x), kiln_cl_mem(w), kiln_cl_off(w),
        kiln_cl_mem(dst), kiln_cl_off(dst), &kiln_cl(be)->queue, NULL);
    if (s != CLBlastSuccess) return clblast_fail(be, s, "convgemm", &g);
    return bias ? add_bias(be, &g, bias, dst) : KILN_OK;
}

kiln_status kiln_clblast_conv2d_bwd_data(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *dy = dst->src[0], *w = dst->src[1];
    geom g;
    if (!decode(dst, dst, w, dy, &g)) return unsupported(be, dst);
    size_t per_image = g.k * g.ohw * sizeof(float);
    size_t nb = KILN_CLBLAST_CONV_WORKSPACE / per_image;
    nb = nb < 1 ? 1 : nb > g.n ? g.n : nb;
    cl_mem col, dxm = kiln_cl_mem(dst);
    size_t dxo = kiln_cl_off(dst), dyo = kiln_cl_off(dy), chw = g.c * g.h * g.w;
    kiln_status st = new_buffer(be, per_image * nb, &col);
    if (st) return st;
    st = fill(be, dxm, dxo, g.n * chw, 0.0f);
    cl_command_queue *q = &kiln_cl(be)->queue;
    for (size_t n0 = 0; n0 < g.n && !st; n0 += nb) {
        size_t cnt = g.n - n0 < nb ? g.n - n0 : nb;
        /* One GEMM per image: CLBlast's strided-batched GEMM with the weights broadcast
           (stride 0) returned wrong columns for images past the first on some shapes (e.g.
           64->192 channels, 5x5, 27x27: the "indirect" path). */
        CLBlastStatusCode s = CLBlastSuccess;
        for (size_t i = 0; i < cnt && s == CLBlastSuccess; i++)
            s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeYes, CLBlastTransposeNo, g.k,
                             g.ohw, g.o, 1.0f, kiln_cl_mem(w), kiln_cl_off(w), g.k, kiln_cl_mem(dy),
                             dyo + (n0 + i) * g.o * g.ohw, g.ohw, 0.0f, col, i * g.k * g.ohw, g.ohw,
                             q, NULL);
        for (size_t i = 0; i < cnt && s == CLBlastSuccess; i++)
            s = CLBlastScol2im(CLBlastKernelModeCrossCorrelation, g.c, g.h, g.w, g.kh, g.kw,
                               (size_t)g.p.pad_t, (size_t)g.p.pad_l, (size_t)g.p.stride_h,
                               (size_t)g.p.stride_w, (size_t)g.p.dil_h, (size_t)g.p.dil_w, col,
                               i * g.k * g.ohw, dxm, dxo + (n0 + i) * chw, q, NULL);
        if (s != CLBlastSuccess) st = clblast_fail(be, s, "backward data", &g);
    }
    clReleaseMemObject(col);
    return st;
}
