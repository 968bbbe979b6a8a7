/* Batch normalization, softmax cross-entropy and accuracy: validation and entry points. */
#include <math.h>
#include <string.h>

#include "ops-impl.h"

/* x (and dy): f32 [N,C] or [N,C,H,W], contiguous, at least one element per channel (the
   statistics of an empty batch are undefined). */
static kiln_status check_bn_input(kiln_backend_t be, const kiln_tensor *t, const char *op,
                                  const char *role) {
    kiln_status st = kiln_check_tensor(be, t, op, role, KILN_F32, 0);
    if (st) return st;
    if (t->ndim != 2 && t->ndim != 4)
        return kiln_shape_error(t, op, role, "expected [N,C] or [N,C,H,W]");
    if (kiln_tensor_nelements(t) == 0)
        return kiln_shape_error(t, op, role, "every channel needs at least one element");
    return KILN_OK;
}

/* A per-channel tensor: [C] when rows == 0, else [rows, C]. */
static kiln_status check_per_channel(kiln_backend_t be, const kiln_tensor *t, const char *op,
                                     const char *role, int rows, int64_t c) {
    kiln_status st = kiln_check_tensor(be, t, op, role, KILN_F32, rows ? 2 : 1);
    if (st) return st;
    if (rows ? (t->shape[0] != rows || t->shape[1] != c) : t->shape[0] != c) {
        if (rows) return kiln_shape_error(t, op, role, "expected [%d,%lld]", rows, (long long)c);
        return kiln_shape_error(t, op, role, "expected [%lld]", (long long)c);
    }
    return KILN_OK;
}

static kiln_status check_eps(const kiln_tensor *dst, const char *op) {
    kiln_bn_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if (!isfinite(p.eps) || p.eps < 0)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: eps %g must be finite and >= 0", op,
                          (double)p.eps);
    return KILN_OK;
}

kiln_status kiln_validate_batchnorm_stats(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "batchnorm_stats";
    const kiln_tensor *x = dst->src[0];
    kiln_status st = check_bn_input(be, x, op, "x");
    return st ? st : check_per_channel(be, dst, op, "stats (destination)", 2, x->shape[1]);
}

kiln_status kiln_validate_batchnorm(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "batchnorm";
    const kiln_tensor *x = dst->src[0];
    kiln_status st;
    if ((st = check_eps(dst, op)) || (st = check_bn_input(be, x, op, "x")) ||
        (st = check_per_channel(be, dst->src[1], op, "stats", 2, x->shape[1])) ||
        (st = check_per_channel(be, dst->src[2], op, "gamma", 0, x->shape[1])) ||
        (st = check_per_channel(be, dst->src[3], op, "beta", 0, x->shape[1])) ||
        (st = kiln_check_tensor(be, dst, op, "y (destination)", KILN_F32, 0)))
        return st;
    return kiln_check_same_shape(dst, x, op, "y", "x");
}

/* The inputs both backward ops share: dy, x (same shape) and the batch statistics. */
static kiln_status check_bn_backward(kiln_backend_t be, const kiln_tensor *dst, const char *op) {
    const kiln_tensor *dy = dst->src[0], *x = dst->src[1];
    kiln_status st;
    if ((st = check_eps(dst, op)) || (st = check_bn_input(be, dy, op, "dy")) ||
        (st = check_bn_input(be, x, op, "x")) || (st = kiln_check_same_shape(dy, x, op, "dy", "x")))
        return st;
    return check_per_channel(be, dst->src[2], op, "stats", 2, x->shape[1]);
}

kiln_status kiln_validate_batchnorm_bwd_params(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "batchnorm_bwd_params";
    kiln_status st = check_bn_backward(be, dst, op);
    return st ? st
              : check_per_channel(be, dst, op, "dparams (destination)", 2, dst->src[1]->shape[1]);
}

kiln_status kiln_validate_batchnorm_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = "batchnorm_bwd";
    kiln_status st;
    if ((st = check_bn_backward(be, dst, op))) return st;
    const kiln_tensor *x = dst->src[1];
    if ((st = check_per_channel(be, dst->src[3], op, "gamma", 0, x->shape[1])) ||
        (st = check_per_channel(be, dst->src[4], op, "dparams", 2, x->shape[1])) ||
        (st = kiln_check_tensor(be, dst, op, "dx (destination)", KILN_F32, 0)))
        return st;
    return kiln_check_same_shape(dst, x, op, "dx", "x");
}

/* logits f32 [N,K] (K >= 1), labels i32 [N], and the destination: [N] or [N,K] (per_class). */
static kiln_status check_rows(kiln_backend_t be, const kiln_tensor *dst, const char *op,
                              const char *dst_role, int per_class) {
    const kiln_tensor *logits = dst->src[0], *labels = dst->src[1];
    kiln_status st;
    if ((st = kiln_check_tensor(be, logits, op, "logits", KILN_F32, 2)) ||
        (st = kiln_check_tensor(be, labels, op, "labels", KILN_I32, 1)))
        return st;
    int64_t n = logits->shape[0], k = logits->shape[1];
    if (k < 1) return kiln_shape_error(logits, op, "logits", "expected at least one class");
    if (k > INT32_MAX) return kiln_shape_error(logits, op, "logits", "too many classes");
    if (labels->shape[0] != n)
        return kiln_shape_error(labels, op, "labels", "expected [%lld]", (long long)n);
    if (per_class) {
        if ((st = kiln_check_tensor(be, dst, op, dst_role, KILN_F32, 0))) return st;
        return kiln_check_same_shape(dst, logits, op, dst_role, "logits");
    }
    if ((st = kiln_check_tensor(be, dst, op, dst_role, KILN_F32, 1))) return st;
    if (dst->shape[0] != n)
        return kiln_shape_error(dst, op, dst_role, "expected [%lld]", (long long)n);
    return KILN_OK;
}

static kiln_status check_xent_params(const kiln_tensor *dst, const char *op, int backward) {
    kiln_xent_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if (!(p.label_smoothing >= 0 && p.label_smoothing <= 1))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: label_smoothing %g must be in [0, 1]", op,
                          (double)p.label_smoothing);
    if (backward && !isfinite(p.scale))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: scale %g must be finite", op,
                          (double)p.scale);
    return KILN_OK;
}

kiln_status kiln_validate_softmax_xent(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_status st = check_xent_params(dst, "softmax_xent", 0);
    return st ? st : check_rows(be, dst, "softmax_xent", "loss (destination)", 0);
}

kiln_status kiln_validate_softmax_xent_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_status st = check_xent_params(dst, "softmax_xent_bwd", 1);
    return st ? st : check_rows(be, dst, "softmax_xent_bwd", "dlogits (destination)", 1);
}

kiln_status kiln_validate_accuracy(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_accuracy_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if (p.top_k < 1)
        return kiln_error(KILN_INVALID_ARGUMENT, "accuracy: top_k %d must be at least 1",
                          (int)p.top_k);
    return check_rows(be, dst, "accuracy", "correct (destination)", 0);
}

kiln_status kiln_batchnorm_stats(kiln_backend_t be, kiln_tensor *x, kiln_tensor *stats) {
    kiln_tensor *src[1] = {x};
    return kiln_run_op(be, KILN_OP_BATCHNORM_STATS, NULL, 0, stats, 1, src);
}

kiln_status kiln_batchnorm(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *x,
                           kiln_tensor *stats, kiln_tensor *gamma, kiln_tensor *beta,
                           kiln_tensor *y) {
    kiln_tensor *src[4] = {x, stats, gamma, beta};
    return kiln_run_op(be, KILN_OP_BATCHNORM, p, sizeof *p, y, 4, src);
}

kiln_status kiln_batchnorm_bwd_params(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *dy,
                                      kiln_tensor *x, kiln_tensor *stats, kiln_tensor *dparams) {
    kiln_tensor *src[3] = {dy, x, stats};
    return kiln_run_op(be, KILN_OP_BATCHNORM_BWD_PARAMS, p, sizeof *p, dparams, 3, src);
}

kiln_status kiln_batchnorm_bwd(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *dy,
                               kiln_tensor *x, kiln_tensor *stats, kiln_tensor *gamma,
                               kiln_tensor *dparams, kiln_tensor *dx) {
    kiln_tensor *src[5] = {dy, x, stats, gamma, dparams};
    return kiln_run_op(be, KILN_OP_BATCHNORM_BWD, p, sizeof *p, dx, 5, src);
}

kiln_status kiln_softmax_xent(kiln_backend_t be, const kiln_xent_params *p, kiln_tensor *logits,
                              kiln_tensor *labels, kiln_tensor *loss) {
    kiln_tensor *src[2] = {logits, labels};
    return kiln_run_op(be, KILN_OP_SOFTMAX_XENT, p, sizeof *p, loss, 2, src);
}

kiln_status kiln_softmax_xent_bwd(kiln_backend_t be, const kiln_xent_params *p, kiln_tensor *logits,
                                  kiln_tensor *labels, kiln_tensor *dlogits) {
    kiln_tensor *src[2] = {logits, labels};
    return kiln_run_op(be, KILN_OP_SOFTMAX_XENT_BWD, p, sizeof *p, dlogits, 2, src);
}

kiln_status kiln_accuracy(kiln_backend_t be, int top_k, kiln_tensor *logits, kiln_tensor *labels,
                          kiln_tensor *correct) {
    kiln_accuracy_params p = {top_k};
    kiln_tensor *src[2] = {logits, labels};
    return kiln_run_op(be, KILN_OP_ACCURACY, &p, sizeof p, correct, 2, src);
}
