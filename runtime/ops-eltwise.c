/* Elementwise, dropout, conversion and optimizer ops: validation and convenience entry points.
   Every tensor here is contiguous, so backends index them by a flat element number. */
#include <math.h>
#include <string.h>

#include "ops-impl.h"

/* Whether the byte ranges of a and b in the same buffer intersect. */
static int overlaps(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->buffer != b->buffer) return 0;
    size_t ea = kiln_tensor_extent(a), eb = kiln_tensor_extent(b);
    if (!ea || !eb) return 0;
    return a->offset < b->offset + eb && b->offset < a->offset + ea;
}

/* A source may share storage with dst only as the very same elements (in place), and only
   where `in_place_ok`: an op reading element i before writing element i is safe, a shifted
   overlap never is. Callers have checked that both are contiguous of the same size. */
static kiln_status check_alias(const kiln_tensor *dst, const kiln_tensor *src, const char *op,
                               const char *rd, const char *rs, int in_place_ok) {
    if (!overlaps(dst, src)) return KILN_OK;
    if (in_place_ok && dst->offset == src->offset &&
        kiln_tensor_extent(dst) == kiln_tensor_extent(src))
        return KILN_OK;
    return kiln_shape_error(src, op, rs, "it overlaps %s%s", rd,
                            in_place_ok ? " without being the same elements (in place)" : "");
}

static kiln_status check_f32(kiln_backend_t be, const kiln_tensor *t, const char *op,
                             const char *role) {
    return kiln_check_tensor(be, t, op, role, KILN_F32, 0);
}

/* dst and n sources, all f32, contiguous and shaped like dst; source i may be dst in place
   when bit i of in_place is set. */
static kiln_status check_map(kiln_backend_t be, const kiln_tensor *dst, const char *op, int n,
                             const char *const *roles, unsigned in_place) {
    kiln_status st = check_f32(be, dst, op, "destination");
    for (int i = 0; !st && i < n; i++) {
        const kiln_tensor *s = dst->src[i];
        if ((st = check_f32(be, s, op, roles[i])) ||
            (st = kiln_check_same_shape(s, dst, op, roles[i], "destination")))
            break;
        st = check_alias(dst, s, op, "the destination", roles[i], (in_place >> i) & 1);
    }
    return st;
}

/* Optimizer state and parameters are written in place: none may overlap another. */
static kiln_status check_disjoint(const kiln_tensor *const *t, const char *const *roles, int n,
                                  const char *op) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (!t[i] || !t[j]) continue;
            kiln_status st = check_alias(t[i], t[j], op, roles[i], roles[j], 0);
            if (st) return st;
        }
    return KILN_OK;
}

kiln_status kiln_validate_add(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"a", "b"};
    return check_map(be, dst, "add", 2, roles, 0x3);
}

kiln_status kiln_validate_mul(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"a", "b"};
    return check_map(be, dst, "mul", 2, roles, 0x3);
}

kiln_status kiln_validate_bias_add(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"x"};
    kiln_status st = check_map(be, dst, "bias_add", 1, roles, 0x1);
    if (st) return st;
    const kiln_tensor *b = dst->src[1];
    if (dst->ndim < 2 || dst->ndim > 4)
        return kiln_shape_error(dst->src[0], "bias_add", "x", "expected 2 to 4 dims [N,C,...]");
    if ((st = kiln_check_tensor(be, b, "bias_add", "bias", KILN_F32, 1))) return st;
    if (b->shape[0] != dst->shape[1])
        return kiln_shape_error(b, "bias_add", "bias", "expected [%lld] (dim 1 of x)",
                                (long long)dst->shape[1]);
    return check_alias(dst, b, "bias_add", "the destination", "bias", 0);
}

kiln_status kiln_validate_axpby(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"x"};
    return check_map(be, dst, "axpby", 1, roles, 0x1);
}

static kiln_status check_act_params(const kiln_tensor *dst, const char *op) {
    kiln_act_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if (p.type < KILN_ACT_RELU || p.type > KILN_ACT_GELU)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: activation type %d is not one of relu (0), leaky_relu (1), elu (2), "
                          "sigmoid (3), tanh (4), gelu (5)",
                          op, (int)p.type);
    if ((p.type == KILN_ACT_LEAKY_RELU || p.type == KILN_ACT_ELU) && !isfinite(p.alpha))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: alpha %g is not finite", op, p.alpha);
    return KILN_OK;
}

kiln_status kiln_validate_act(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"x"};
    kiln_status st = check_map(be, dst, "act", 1, roles, 0x1);
    return st ? st : check_act_params(dst, "act");
}

kiln_status kiln_validate_act_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"dy", "x"};
    kiln_status st = check_map(be, dst, "act_bwd", 2, roles, 0x3);
    return st ? st : check_act_params(dst, "act_bwd");
}

/* The threshold is derived from p, exactly as kiln_dropout computes it. */
static uint32_t dropout_threshold(float p) {
    return (uint32_t)((double)p * 4294967296.0);
}

static kiln_status check_dropout(kiln_backend_t be, const kiln_tensor *dst, const char *op,
                                 const char *role) {
    kiln_status st = check_map(be, dst, op, 1, &role, 0x1);
    if (st) return st;
    kiln_dropout_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if (!(p.p >= 0.0f && p.p < 1.0f))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: p = %g is outside [0, 1)", op, p.p);
    if (p.threshold != dropout_threshold(p.p))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: threshold %u does not match p = %g (expected (uint32)(p * 2^32) = "
                          "%u, as kiln_dropout computes it)",
                          op, p.threshold, p.p, dropout_threshold(p.p));
    return KILN_OK;
}

kiln_status kiln_validate_dropout(kiln_backend_t be, const kiln_tensor *dst) {
    return check_dropout(be, dst, "dropout", "x");
}

kiln_status kiln_validate_dropout_bwd(kiln_backend_t be, const kiln_tensor *dst) {
    return check_dropout(be, dst, "dropout_bwd", "dy");
}

kiln_status kiln_validate_u8_to_f32(kiln_backend_t be, const kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0];
    kiln_status st;
    if ((st = kiln_check_tensor(be, x, "u8_to_f32", "x", KILN_U8, 4)) ||
        (st = kiln_check_tensor(be, dst, "u8_to_f32", "destination", KILN_F32, 4)))
        return st;
    if (x->shape[3] < 1 || x->shape[3] > 4)
        return kiln_shape_error(x, "u8_to_f32", "x", "expected [N,H,W,C] with 1 <= C <= 4");
    if (dst->shape[0] != x->shape[0] || dst->shape[1] != x->shape[3] ||
        dst->shape[2] != x->shape[1] || dst->shape[3] != x->shape[2])
        return kiln_shape_error(dst, "u8_to_f32", "destination", "expected [%lld,%lld,%lld,%lld]",
                                (long long)x->shape[0], (long long)x->shape[3],
                                (long long)x->shape[1], (long long)x->shape[2]);
    kiln_convert_params p;
    memcpy(&p, dst->op_params, sizeof p);
    for (int c = 0; c < x->shape[3]; c++)
        if (!isfinite(p.scale[c]) || !isfinite(p.bias[c]))
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "u8_to_f32: scale[%d] = %g or bias[%d] = %g is not finite", c,
                              p.scale[c], c, p.bias[c]);
    return check_alias(dst, x, "u8_to_f32", "the destination", "x", 0);
}

kiln_status kiln_validate_sum_squares(kiln_backend_t be, const kiln_tensor *dst) {
    const kiln_tensor *x = dst->src[0];
    kiln_status st;
    if ((st = check_f32(be, x, "sum_squares", "x")) ||
        (st = check_f32(be, dst, "sum_squares", "destination")))
        return st;
    if (kiln_tensor_nelements(dst) != 1)
        return kiln_shape_error(dst, "sum_squares", "destination", "expected one element");
    return check_alias(dst, x, "sum_squares", "the destination", "x", 0);
}

static kiln_status check_finite(const char *op, const char *name, float v) {
    if (isfinite(v)) return KILN_OK;
    return kiln_error(KILN_INVALID_ARGUMENT, "%s: %s = %g is not finite", op, name, v);
}

kiln_status kiln_validate_sgd_update(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"grad"};
    kiln_status st = check_map(be, dst, "sgd_update", 1, roles, 0);
    if (st) return st;
    kiln_sgd_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if ((st = check_finite("sgd_update", "lr", p.lr)) ||
        (st = check_finite("sgd_update", "grad_scale", p.grad_scale)))
        return st;
    if (!(p.momentum >= 0.0f && p.momentum <= 1.0f))
        return kiln_error(KILN_INVALID_ARGUMENT, "sgd_update: momentum %g is outside [0, 1]",
                          p.momentum);
    if (!(p.weight_decay >= 0.0f) || !isfinite(p.weight_decay))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "sgd_update: weight_decay %g must be finite and >= 0", p.weight_decay);
    if (dst->src[1])
        return kiln_shape_error(dst->src[1], "sgd_update", "src1",
                                "expected NULL (src2 is the velocity)");
    const kiln_tensor *v = dst->src[2];
    if (!v && p.momentum != 0.0f)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "sgd_update: momentum %g needs a velocity tensor (src2)", p.momentum);
    if (v && ((st = check_f32(be, v, "sgd_update", "velocity")) ||
              (st = kiln_check_same_shape(v, dst, "sgd_update", "velocity", "param"))))
        return st;
    const kiln_tensor *t[3] = {dst, dst->src[0], v};
    static const char *const names[3] = {"param", "grad", "velocity"};
    return check_disjoint(t, names, 3, "sgd_update");
}

kiln_status kiln_validate_adam_update(kiln_backend_t be, const kiln_tensor *dst) {
    static const char *const roles[] = {"grad", "m", "v"};
    kiln_status st = check_map(be, dst, "adam_update", 3, roles, 0);
    if (st) return st;
    kiln_adam_params p;
    memcpy(&p, dst->op_params, sizeof p);
    if ((st = check_finite("adam_update", "lr", p.lr)) ||
        (st = check_finite("adam_update", "grad_scale", p.grad_scale)))
        return st;
    if (!(p.beta1 >= 0.0f && p.beta1 < 1.0f) || !(p.beta2 >= 0.0f && p.beta2 < 1.0f))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "adam_update: beta1 = %g and beta2 = %g must be in [0, 1)", p.beta1,
                          p.beta2);
    if (!(p.eps > 0.0f) || !isfinite(p.eps))
        return kiln_error(KILN_INVALID_ARGUMENT, "adam_update: eps = %g must be finite and > 0",
                          p.eps);
    if (!(p.weight_decay >= 0.0f) || !isfinite(p.weight_decay))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "adam_update: weight_decay %g must be finite and >= 0", p.weight_decay);
    if (p.step < 1)
        return kiln_error(KILN_INVALID_ARGUMENT, "adam_update: step %d must be >= 1", (int)p.step);
    const kiln_tensor *t[4] = {dst, dst->src[0], dst->src[1], dst->src[2]};
    static const char *const names[4] = {"param", "grad", "m", "v"};
    return check_disjoint(t, names, 4, "adam_update");
}

/* ---- convenience entry points ---- */

kiln_status kiln_add(kiln_backend_t be, kiln_tensor *a, kiln_tensor *b, kiln_tensor *y) {
    kiln_tensor *src[2] = {a, b};
    return kiln_run_op(be, KILN_OP_ADD, NULL, 0, y, 2, src);
}

kiln_status kiln_mul(kiln_backend_t be, kiln_tensor *a, kiln_tensor *b, kiln_tensor *y) {
    kiln_tensor *src[2] = {a, b};
    return kiln_run_op(be, KILN_OP_MUL, NULL, 0, y, 2, src);
}

kiln_status kiln_bias_add(kiln_backend_t be, kiln_tensor *x, kiln_tensor *bias, kiln_tensor *y) {
    kiln_tensor *src[2] = {x, bias};
    return kiln_run_op(be, KILN_OP_BIAS_ADD, NULL, 0, y, 2, src);
}

kiln_status kiln_axpby(kiln_backend_t be, float alpha, kiln_tensor *x, float beta, kiln_tensor *y) {
    kiln_axpby_params p = {alpha, beta};
    return kiln_run_op(be, KILN_OP_AXPBY, &p, sizeof p, y, 1, &x);
}

kiln_status kiln_act(kiln_backend_t be, const kiln_act_params *p, kiln_tensor *x, kiln_tensor *y) {
    if (!p) return kiln_error(KILN_INVALID_ARGUMENT, "act: no parameters");
    return kiln_run_op(be, KILN_OP_ACT, p, sizeof *p, y, 1, &x);
}

kiln_status kiln_act_bwd(kiln_backend_t be, const kiln_act_params *p, kiln_tensor *dy,
                         kiln_tensor *x, kiln_tensor *dx) {
    if (!p) return kiln_error(KILN_INVALID_ARGUMENT, "act_bwd: no parameters");
    kiln_tensor *src[2] = {dy, x};
    return kiln_run_op(be, KILN_OP_ACT_BWD, p, sizeof *p, dx, 2, src);
}

static kiln_status run_dropout(kiln_backend_t be, kiln_op op, float p, uint64_t seed,
                               uint64_t offset, kiln_tensor *x, kiln_tensor *y) {
    /* Checked here too: the threshold conversion is undefined outside [0, 1). */
    if (!(p >= 0.0f && p < 1.0f))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: p = %g is outside [0, 1)", kiln_op_name(op),
                          p);
    kiln_dropout_params dp = {
        .p = p,
        .threshold = dropout_threshold(p),
        .seed_lo = (uint32_t)seed,
        .seed_hi = (uint32_t)(seed >> 32),
        .offset_lo = (uint32_t)offset,
        .offset_hi = (uint32_t)(offset >> 32),
    };
    return kiln_run_op(be, op, &dp, sizeof dp, y, 1, &x);
}

kiln_status kiln_dropout(kiln_backend_t be, float p, uint64_t seed, uint64_t offset, kiln_tensor *x,
                         kiln_tensor *y) {
    return run_dropout(be, KILN_OP_DROPOUT, p, seed, offset, x, y);
}

kiln_status kiln_dropout_bwd(kiln_backend_t be, float p, uint64_t seed, uint64_t offset,
                             kiln_tensor *dy, kiln_tensor *dx) {
    return run_dropout(be, KILN_OP_DROPOUT_BWD, p, seed, offset, dy, dx);
}

kiln_status kiln_u8_to_f32(kiln_backend_t be, const kiln_convert_params *p, kiln_tensor *x,
                           kiln_tensor *y) {
    if (!p) return kiln_error(KILN_INVALID_ARGUMENT, "u8_to_f32: no parameters");
    return kiln_run_op(be, KILN_OP_U8_TO_F32, p, sizeof *p, y, 1, &x);
}

kiln_status kiln_sum_squares(kiln_backend_t be, kiln_tensor *x, kiln_tensor *out) {
    return kiln_run_op(be, KILN_OP_SUM_SQUARES, NULL, 0, out, 1, &x);
}

kiln_status kiln_sgd_update(kiln_backend_t be, const kiln_sgd_params *p, kiln_tensor *param,
                            kiln_tensor *grad, kiln_tensor *velocity) {
    if (!p) return kiln_error(KILN_INVALID_ARGUMENT, "sgd_update: no parameters");
    kiln_tensor *src[3] = {grad, NULL, velocity};
    return kiln_run_op(be, KILN_OP_SGD_UPDATE, p, sizeof *p, param, 3, src);
}

kiln_status kiln_adam_update(kiln_backend_t be, const kiln_adam_params *p, kiln_tensor *param,
                             kiln_tensor *grad, kiln_tensor *m, kiln_tensor *v) {
    if (!p) return kiln_error(KILN_INVALID_ARGUMENT, "adam_update: no parameters");
    kiln_tensor *src[3] = {grad, m, v};
    return kiln_run_op(be, KILN_OP_ADAM_UPDATE, p, sizeof *p, param, 3, src);
}
