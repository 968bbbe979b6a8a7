/* Pooling, local response normalization and copies: validation, the pooling output size and
   the convenience entry points. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops-impl.h"

int64_t kiln_pool2d_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo,
                             int64_t pad_hi, int ceil_mode) {
    if (in <= 0 || kernel <= 0 || stride <= 0 || pad_lo < 0 || pad_hi < 0) return 0;
    int64_t span = in + pad_lo + pad_hi - kernel;
    if (span < 0) return 0;
    int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    /* PyTorch's rule: a window starting in the bottom/right padding would see no input. */
    if (ceil_mode && (out - 1) * stride >= in + pad_lo) out--;
    return out;
}

static kiln_status check_disjoint(const kiln_tensor *src, const kiln_tensor *dst, const char *op,
                                  const char *role);

/* ---- pooling ---- */

/* Params and output size of a pooling node whose input is x (dims already checked). */
static kiln_status pool_geometry(const kiln_tensor *dst, const kiln_tensor *x, const char *op,
                                 kiln_pool2d_params *p, int64_t *oh, int64_t *ow) {
    memcpy(p, dst->op_params, sizeof *p);
    if (p->type != KILN_POOL_MAX && p->type != KILN_POOL_AVG)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: unknown pooling type %d (0 max, 1 avg)", op,
                          (int)p->type);
    if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: kernel %dx%d and stride %dx%d must be at least 1", op,
                          (int)p->kernel_h, (int)p->kernel_w, (int)p->stride_h, (int)p->stride_w);
    /* Padding smaller than the kernel keeps at least one input element in every window, so
       max always has a candidate and avg never divides by zero. */
    if (p->pad_t < 0 || p->pad_b < 0 || p->pad_l < 0 || p->pad_r < 0 || p->pad_t >= p->kernel_h ||
        p->pad_b >= p->kernel_h || p->pad_l >= p->kernel_w || p->pad_r >= p->kernel_w)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: padding t=%d b=%d l=%d r=%d must be in [0, kernel) for kernel %dx%d",
                          op, (int)p->pad_t, (int)p->pad_b, (int)p->pad_l, (int)p->pad_r,
                          (int)p->kernel_h, (int)p->kernel_w);
    if ((p->ceil_mode != 0 && p->ceil_mode != 1) ||
        (p->count_include_pad != 0 && p->count_include_pad != 1))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: ceil_mode (%d) and count_include_pad (%d) must be 0 or 1", op,
                          (int)p->ceil_mode, (int)p->count_include_pad);
    *oh = kiln_pool2d_out_size(x->shape[2], p->kernel_h, p->stride_h, p->pad_t, p->pad_b,
                               p->ceil_mode);
    *ow = kiln_pool2d_out_size(x->shape[3], p->kernel_w, p->stride_w, p->pad_l, p->pad_r,
                               p->ceil_mode);
    if (*oh <= 0 || *ow <= 0)
        return kiln_shape_error(x, op, "x",
                                "smaller than the %dx%d window with padding t=%d b=%d l=%d r=%d",
                                (int)p->kernel_h, (int)p->kernel_w, (int)p->pad_t, (int)p->pad_b,
                                (int)p->pad_l, (int)p->pad_r);
    return KILN_OK;
}

/* t must be [N, C, oh, ow] of x. */
static kiln_status check_pooled(const kiln_tensor *t, const kiln_tensor *x, int64_t oh, int64_t ow,
                                const char *op, const char *role) {
    if (t->shape[0] != x->shape[0] || t->shape[1] != x->shape[1] || t->shape[2] != oh ||
        t->shape[3] != ow)
        return kiln_shape_error(t, op, role,
                                "expected f32[%lld,%lld,%lld,%lld] for x f32[%lld,%lld,%lld,%lld]",
                                (long long)x->shape[0], (long long)x->shape[1], (long long)oh,
                                (long long)ow, (long long)x->shape[0], (long long)x->shape[1],
                                (long long)x->shape[2], (long long)x->shape[3]);
    return KILN_OK;
}

kiln_status kiln_validate_pool2d(kiln_backend_t be, const kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0];
    kiln_status st;
    if ((st = kiln_check_tensor(be, x, "pool2d", "x", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, dst, "pool2d", "y", KILN_F32, 4)))
        return st;
    kiln_pool2d_params p;
    int64_t oh, ow;
    if ((st = pool_geometry(dst, x, "pool2d", &p, &oh, &ow)) ||
        (st = check_pooled(dst, x, oh, ow, "pool2d", "y")))
        return st;
    return check_disjoint(x, dst, "pool2d", "x");
}

kiln_status kiln_validate_pool2d_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    const kiln_tensor *dy = dst->src[0], *x = dst->src[1];
    kiln_status st;
    if ((st = kiln_check_tensor(be, dy, "pool2d_bwd", "dy", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, x, "pool2d_bwd", "x", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, dst, "pool2d_bwd", "dx", KILN_F32, 4)) ||
        (st = kiln_check_same_shape(dst, x, "pool2d_bwd", "dx", "x")))
        return st;
    kiln_pool2d_params p;
    int64_t oh, ow;
    if ((st = pool_geometry(dst, x, "pool2d_bwd", &p, &oh, &ow)) ||
        (st = check_pooled(dy, x, oh, ow, "pool2d_bwd", "dy")) ||
        (st = check_disjoint(dy, dst, "pool2d_bwd", "dy")))
        return st;
    return check_disjoint(x, dst, "pool2d_bwd", "x");
}

/* ---- local response normalization ---- */

static kiln_status check_lrn_params(const kiln_tensor *dst, const char *op) {
    kiln_lrn_params p;
    memcpy(&p, dst->op_params, sizeof p);
    /* k > 0 and alpha >= 0 keep the base of the power positive for any input. */
    if (p.size < 1 || !isfinite(p.alpha) || p.alpha < 0 || !isfinite(p.beta) || !isfinite(p.k) ||
        !(p.k > 0))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: size %d, alpha %g, beta %g, k %g: expected size >= 1, alpha >= 0, "
                          "finite beta and k > 0",
                          op, (int)p.size, (double)p.alpha, (double)p.beta, (double)p.k);
    return KILN_OK;
}

kiln_status kiln_validate_lrn(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_status st;
    if ((st = kiln_check_tensor(be, dst->src[0], "lrn", "x", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, dst, "lrn", "y", KILN_F32, 4)) ||
        (st = kiln_check_same_shape(dst, dst->src[0], "lrn", "y", "x")) ||
        (st = check_disjoint(dst->src[0], dst, "lrn", "x")))
        return st;
    return check_lrn_params(dst, "lrn");
}

kiln_status kiln_validate_lrn_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_status st;
    if ((st = kiln_check_tensor(be, dst->src[0], "lrn_bwd", "dy", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, dst->src[1], "lrn_bwd", "x", KILN_F32, 4)) ||
        (st = kiln_check_tensor(be, dst, "lrn_bwd", "dx", KILN_F32, 4)) ||
        (st = kiln_check_same_shape(dst->src[0], dst->src[1], "lrn_bwd", "dy", "x")) ||
        (st = kiln_check_same_shape(dst, dst->src[1], "lrn_bwd", "dx", "x")) ||
        (st = check_disjoint(dst->src[0], dst, "lrn_bwd", "dy")) ||
        (st = check_disjoint(dst->src[1], dst, "lrn_bwd", "x")))
        return st;
    return check_lrn_params(dst, "lrn_bwd");
}

/* ---- copies ---- */

/* A strided operand of COPY/CONCAT: f32/i32/u8 with element-aligned offset and strides. */
static kiln_status check_strided(kiln_backend_t be, const kiln_tensor *t, const char *op,
                                 const char *role) {
    kiln_status st = kiln_check_storage(be, t, op, role);
    if (st) return st;
    if (t->dtype != KILN_F32 && t->dtype != KILN_I32 && t->dtype != KILN_U8)
        return kiln_shape_error(t, op, role, "expected dtype f32, i32 or u8");
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    if (t->offset % (size_t)es)
        return kiln_shape_error(t, op, role, "offset %zu is not element aligned", t->offset);
    for (int d = 0; d < t->ndim; d++)
        if (t->stride[d] < 0 || t->stride[d] % es)
            return kiln_shape_error(t, op, role, "stride %lld of dim %d is not a multiple of %lld",
                                    (long long)t->stride[d], d, (long long)es);
    return KILN_OK;
}

/* Whether two elements of t share storage: with the dims sorted by stride, each stride must
   step over everything the inner dims span. */
static int overlaps_itself(const kiln_tensor *t) {
    int idx[KILN_MAX_DIMS], n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] > 1) idx[n++] = d;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t->stride[idx[j]] < t->stride[idx[j - 1]]; j--) {
            int s = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = s;
        }
    int64_t span = (int64_t)kiln_dtype_size(t->dtype);
    for (int i = 0; i < n; i++) {
        if (t->stride[idx[i]] < span) return 1;
        span += (t->shape[idx[i]] - 1) * t->stride[idx[i]];
    }
    return 0;
}

/* The destination must not alias itself (work-items would race) nor any source. */
static kiln_status check_destination(const kiln_tensor *dst, const char *op) {
    if (overlaps_itself(dst))
        return kiln_shape_error(dst, op, "destination", "its strides make elements overlap");
    return KILN_OK;
}

static kiln_status check_disjoint(const kiln_tensor *src, const kiln_tensor *dst, const char *op,
                                  const char *role) {
    size_t se = kiln_tensor_extent(src), de = kiln_tensor_extent(dst);
    if (src->buffer == dst->buffer && se && de && src->offset < dst->offset + de &&
        dst->offset < src->offset + se)
        return kiln_shape_error(src, op, role, "shares storage with the destination");
    return KILN_OK;
}

kiln_status kiln_validate_copy(kiln_backend_t be, const kiln_tensor *dst) {
    const kiln_tensor *src = dst->src[0];
    kiln_status st;
    if ((st = check_strided(be, src, "copy", "src")) ||
        (st = check_strided(be, dst, "copy", "dst")) ||
        (st = kiln_check_same_shape(src, dst, "copy", "src", "dst")))
        return st;
    if (src->dtype != dst->dtype)
        return kiln_shape_error(src, "copy", "src", "dst has dtype %s; copies do not convert",
                                kiln_dtype_name(dst->dtype));
    if ((st = check_destination(dst, "copy"))) return st;
    return check_disjoint(src, dst, "copy", "src");
}

kiln_status kiln_validate_concat(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_concat_params p;
    memcpy(&p, dst->op_params, sizeof p);
    kiln_status st = check_strided(be, dst, "concat", "dst");
    if (st) return st;
    if (p.axis < 0 || p.axis >= dst->ndim)
        return kiln_shape_error(dst, "concat", "dst", "axis %d is outside [0, %d)", (int)p.axis,
                                dst->ndim);
    int n = 0;
    while (n < KILN_MAX_SRC && dst->src[n]) n++;
    for (int i = n; i < KILN_MAX_SRC; i++)
        if (dst->src[i])
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "concat: source %d is missing but source %d is given", n, i);
    if (n == 0) return kiln_error(KILN_INVALID_ARGUMENT, "concat: no source tensors");
    int64_t along = 0;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *s = dst->src[i];
        char role[16];
        snprintf(role, sizeof role, "source %d", i);
        if ((st = check_strided(be, s, "concat", role))) return st;
        int fits = s->dtype == dst->dtype && s->ndim == dst->ndim;
        for (int d = 0; fits && d < s->ndim; d++)
            fits = d == p.axis || s->shape[d] == dst->shape[d];
        if (!fits) {
            char dd[96];
            kiln_tensor_describe(dst, dd, sizeof dd);
            return kiln_shape_error(s, "concat", role,
                                    "expected dtype and every dim but %d equal to dst %s",
                                    (int)p.axis, dd);
        }
        if ((st = check_disjoint(s, dst, "concat", role))) return st;
        along += s->shape[p.axis];
    }
    if (along != dst->shape[p.axis])
        return kiln_shape_error(dst, "concat", "dst", "the sources add up to %lld along axis %d",
                                (long long)along, (int)p.axis);
    return check_destination(dst, "concat");
}

/* ---- convenience entry points ---- */

kiln_status kiln_pool2d(kiln_backend_t be, const kiln_pool2d_params *p, kiln_tensor *x,
                        kiln_tensor *y) {
    kiln_tensor *src[1] = {x};
    return kiln_run_op(be, KILN_OP_POOL2D, p, sizeof *p, y, 1, src);
}

kiln_status kiln_pool2d_bwd(kiln_backend_t be, const kiln_pool2d_params *p, kiln_tensor *dy,
                            kiln_tensor *x, kiln_tensor *dx) {
    kiln_tensor *src[2] = {dy, x};
    return kiln_run_op(be, KILN_OP_POOL2D_BWD, p, sizeof *p, dx, 2, src);
}

kiln_status kiln_lrn(kiln_backend_t be, const kiln_lrn_params *p, kiln_tensor *x, kiln_tensor *y) {
    kiln_tensor *src[1] = {x};
    return kiln_run_op(be, KILN_OP_LRN, p, sizeof *p, y, 1, src);
}

kiln_status kiln_lrn_bwd(kiln_backend_t be, const kiln_lrn_params *p, kiln_tensor *dy,
                         kiln_tensor *x, kiln_tensor *dx) {
    kiln_tensor *src[2] = {dy, x};
    return kiln_run_op(be, KILN_OP_LRN_BWD, p, sizeof *p, dx, 2, src);
}

kiln_status kiln_copy(kiln_backend_t be, kiln_tensor *src, kiln_tensor *dst) {
    kiln_tensor *s[1] = {src};
    return kiln_run_op(be, KILN_OP_COPY, NULL, 0, dst, 1, s);
}

kiln_status kiln_concat(kiln_backend_t be, int axis, kiln_tensor *const *srcs, int n,
                        kiln_tensor *dst) {
    if (!srcs || n < 1 || n > KILN_MAX_SRC)
        return kiln_error(KILN_INVALID_ARGUMENT, "concat: %d sources; expected 1 to %d", n,
                          KILN_MAX_SRC);
    for (int i = 0; i < n; i++)
        if (!srcs[i]) return kiln_error(KILN_INVALID_ARGUMENT, "concat: source %d is NULL", i);
    kiln_concat_params p = {axis};
    return kiln_run_op(be, KILN_OP_CONCAT, &p, sizeof p, dst, n, srcs);
}
