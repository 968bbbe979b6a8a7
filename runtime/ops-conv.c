/* Convolution family: validation of CONV2D, CONV2D_BWD_DATA, CONV2D_BWD_FILTER and BIAS_GRAD,
   and their convenience entry points. The three convolution ops relate the same three tensors
   (x-like [N,C,H,W], w [O,C/g,KH,KW], y-like [N,O,OH,OW]); only which one is the destination
   differs, so one check serves all three. */
#include <string.h>

#include "ops-impl.h"

int64_t kiln_conv2d_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo,
                             int64_t pad_hi, int64_t dilation) {
    if (in <= 0 || kernel <= 0 || stride <= 0 || dilation <= 0 || pad_lo < 0 || pad_hi < 0)
        return 0;
    int64_t span = in + pad_lo + pad_hi - dilation * (kernel - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

static kiln_status check_params(const kiln_tensor *dst, const char *op, kiln_conv2d_params *p) {
    memcpy(p, dst->op_params, sizeof *p);
    if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1 || p->groups < 1 ||
        p->pad_t < 0 || p->pad_b < 0 || p->pad_l < 0 || p->pad_r < 0)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: stride %dx%d, dilation %dx%d and groups %d must be >= 1, padding "
                          "(t %d, b %d, l %d, r %d) >= 0",
                          op, p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->groups, p->pad_t,
                          p->pad_b, p->pad_l, p->pad_r);
    return KILN_OK;
}

/* x, w and y are checked as tensors already; roles name them in messages. */
static kiln_status check_geometry(const char *op, const kiln_conv2d_params *p, const kiln_tensor *x,
                                  const char *rx, const kiln_tensor *w, const char *rw,
                                  const kiln_tensor *y, const char *ry) {
    int64_t n = x->shape[0], c = x->shape[1], o = w->shape[0], g = p->groups;
    if (c % g)
        return kiln_shape_error(x, op, rx, "its %lld channels are not divisible by groups=%lld",
                                (long long)c, (long long)g);
    if (o % g)
        return kiln_shape_error(w, op, rw,
                                "its %lld output channels are not divisible by groups=%lld",
                                (long long)o, (long long)g);
    if (w->shape[1] != c / g)
        return kiln_shape_error(w, op, rw, "expected dim 1 = C/groups = %lld (%s has C=%lld)",
                                (long long)(c / g), rx, (long long)c);
    int64_t oh =
        kiln_conv2d_out_size(x->shape[2], w->shape[2], p->stride_h, p->pad_t, p->pad_b, p->dil_h);
    int64_t ow =
        kiln_conv2d_out_size(x->shape[3], w->shape[3], p->stride_w, p->pad_l, p->pad_r, p->dil_w);
    if (oh <= 0 || ow <= 0)
        return kiln_shape_error(x, op, rx,
                                "the %lldx%lld kernel (dilation %dx%d, padding t%d b%d l%d r%d) "
                                "does not fit: output would be %lldx%lld",
                                (long long)w->shape[2], (long long)w->shape[3], p->dil_h, p->dil_w,
                                p->pad_t, p->pad_b, p->pad_l, p->pad_r, (long long)oh,
                                (long long)ow);
    if (y->shape[0] != n || y->shape[1] != o || y->shape[2] != oh || y->shape[3] != ow)
        return kiln_shape_error(y, op, ry, "expected f32[%lld,%lld,%lld,%lld]", (long long)n,
                                (long long)o, (long long)oh, (long long)ow);
    return KILN_OK;
}

static kiln_status check_conv(kiln_backend_t be, const char *op, const kiln_tensor *dst,
                              const kiln_tensor *x, const char *rx, const kiln_tensor *w,
                              const char *rw, const kiln_tensor *y, const char *ry,
                              kiln_conv2d_params *p) {
    kiln_status st;
    if ((st = kiln_check_tensor(be, x, op, rx, KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, w, op, rw, KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, y, op, ry, KILN_F32, 4)) || (st = check_params(dst, op, p)))
        return st;
    return check_geometry(op, p, x, rx, w, rw, y, ry);
}

kiln_status kiln_validate_conv2d(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "conv2d";
    kiln_conv2d_params p;
    kiln_status st = check_conv(be, op, dst, dst->src[0], "x", dst->src[1], "w", dst, "y", &p);
    if (st || !dst->src[2]) return st;
    const kiln_tensor *b = dst->src[2];
    if ((st = kiln_check_tensor(be, b, op, "bias", KILN_F32, 1))) return st;
    if (b->shape[0] != dst->src[1]->shape[0])
        return kiln_shape_error(b, op, "bias", "expected f32[%lld] (one per output channel)",
                                (long long)dst->src[1]->shape[0]);
    return KILN_OK;
}

kiln_status kiln_validate_conv2d_bwd_data(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_conv2d_params p;
    return check_conv(be, "conv2d_bwd_data", dst, dst, "dx", dst->src[1], "w", dst->src[0], "dy",
                      &p);
}

kiln_status kiln_validate_conv2d_bwd_filter(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_conv2d_params p;
    return check_conv(be, "conv2d_bwd_filter", dst, dst->src[0], "x", dst, "dw", dst->src[1], "dy",
                      &p);
}

kiln_status kiln_validate_bias_grad(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "bias_grad";
    const kiln_tensor *dy = dst->src[0];
    kiln_status st;
    if ((st = kiln_check_tensor(be, dy, op, "dy", KILN_F32, 0)) ||
        (st = kiln_check_tensor(be, dst, op, "db", KILN_F32, 1)))
        return st;
    if (dy->ndim < 2) return kiln_shape_error(dy, op, "dy", "expected 2 to 4 dims [N,C,...]");
    if (dst->shape[0] != dy->shape[1])
        return kiln_shape_error(dst, op, "db", "expected f32[%lld] (dim 1 of dy)",
                                (long long)dy->shape[1]);
    return KILN_OK;
}

kiln_status kiln_conv2d(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *x,
                        kiln_tensor *w, kiln_tensor *bias, kiln_tensor *y) {
    kiln_tensor *src[3] = {x, w, bias};
    return kiln_run_op(be, KILN_OP_CONV2D, p, sizeof *p, y, 3, src);
}

kiln_status kiln_conv2d_bwd_data(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *dy,
                                 kiln_tensor *w, kiln_tensor *dx) {
    kiln_tensor *src[2] = {dy, w};
    return kiln_run_op(be, KILN_OP_CONV2D_BWD_DATA, p, sizeof *p, dx, 2, src);
}

kiln_status kiln_conv2d_bwd_filter(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *x,
                                   kiln_tensor *dy, kiln_tensor *dw) {
    kiln_tensor *src[2] = {x, dy};
    return kiln_run_op(be, KILN_OP_CONV2D_BWD_FILTER, p, sizeof *p, dw, 2, src);
}

kiln_status kiln_bias_grad(kiln_backend_t be, kiln_tensor *dy, kiln_tensor *db) {
    kiln_tensor *src[1] = {dy};
    return kiln_run_op(be, KILN_OP_BIAS_GRAD, NULL, 0, db, 1, src);
}
