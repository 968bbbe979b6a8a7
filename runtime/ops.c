/* Op validation and decoding shared by every backend, and the convenience entry points. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops-impl.h"

static const unsigned written_srcs[KILN_OP_COUNT] = {
#define X(e, family, name, wmask) [KILN_OP_##e] = wmask,
#include "kiln/ops.def"
#undef X
};

unsigned kiln_op_written_srcs(kiln_op op) {
    return (unsigned)op < KILN_OP_COUNT ? written_srcs[op] : 0;
}

kiln_status kiln_check_storage(kiln_backend_t be, const kiln_tensor *t, const char *op,
                               const char *role) {
    if (!t) return kiln_error(KILN_INVALID_ARGUMENT, "%s: missing %s tensor", op, role);
    if (!t->buffer)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: %s tensor '%s' has no storage", op, role,
                          t->name);
    if (t->buffer->be != be)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: %s tensor '%s' lives on backend '%s', the op runs on '%s'", op, role,
                          t->name, t->buffer->be->name, be->name);
    return KILN_OK;
}

kiln_status kiln_validate_gemm(kiln_backend_t be, const kiln_tensor *dst) {
    kiln_status st;
    if ((st = kiln_check_storage(be, dst->src[0], "gemm", "A")) ||
        (st = kiln_check_storage(be, dst->src[1], "gemm", "B")))
        return st;
    kiln_gemm_desc g;
    return kiln_gemm_decode(dst, &g);
}

static const kiln_validate_fn validators[KILN_OP_COUNT] = {
#define X(e, family, name, wmask) [KILN_OP_##e] = kiln_validate_##name,
#include "kiln/ops.def"
#undef X
};

kiln_validate_fn kiln_op_validator(kiln_op op) {
    return (unsigned)op < KILN_OP_COUNT ? validators[op] : NULL;
}

kiln_status kiln_op_validate(kiln_backend_t be, const kiln_tensor *dst) {
    const char *op = kiln_op_name(dst->op);
    kiln_status st = kiln_check_storage(be, dst, op, "destination");
    if (st) return st;
    if ((unsigned)dst->op >= KILN_OP_COUNT || !validators[dst->op])
        return kiln_error(KILN_INVALID_ARGUMENT, "compute: op %d is not an op", (int)dst->op);
    return validators[dst->op](be, dst);
}

kiln_status kiln_check_tensor(kiln_backend_t be, const kiln_tensor *t, const char *op,
                              const char *role, kiln_dtype dtype, int ndim) {
    kiln_status st = kiln_check_storage(be, t, op, role);
    if (st) return st;
    if (t->dtype != dtype)
        return kiln_shape_error(t, op, role, "expected dtype %s", kiln_dtype_name(dtype));
    if (ndim > 0 && t->ndim != ndim) return kiln_shape_error(t, op, role, "expected %d dims", ndim);
    if (!kiln_tensor_is_contiguous(t)) return kiln_shape_error(t, op, role, "must be contiguous");
    if (t->offset % kiln_dtype_size(t->dtype))
        return kiln_shape_error(t, op, role, "offset %zu is not element aligned", t->offset);
    return KILN_OK;
}

kiln_status kiln_check_same_shape(const kiln_tensor *a, const kiln_tensor *b, const char *op,
                                  const char *ra, const char *rb) {
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (same) return KILN_OK;
    char da[96], db[96];
    kiln_tensor_describe(a, da, sizeof da);
    kiln_tensor_describe(b, db, sizeof db);
    return kiln_error(KILN_SHAPE, "%s: %s is %s but %s is %s; they must match", op, ra, da, rb, db);
}

kiln_status kiln_run_op(kiln_backend_t be, kiln_op op, const void *params, size_t params_size,
                        kiln_tensor *dst, int nsrc, kiln_tensor *const *src) {
    if (!dst)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: no destination tensor", kiln_op_name(op));
    if (params_size > KILN_MAX_OP_PARAMS || nsrc > KILN_MAX_SRC)
        return kiln_error(KILN_INTERNAL, "%s: params or sources exceed the node", kiln_op_name(op));
    kiln_tensor node = *dst;
    node.op = op;
    memset(node.src, 0, sizeof node.src);
    for (int i = 0; i < nsrc; i++) node.src[i] = src[i];
    memset(node.op_params, 0, sizeof node.op_params);
    if (params_size) memcpy(node.op_params, params, params_size);
    return kiln_compute(be, &node);
}

kiln_status kiln_gemm(kiln_backend_t be, int trans_a, int trans_b, float alpha, kiln_tensor *a,
                      kiln_tensor *b, float beta, kiln_tensor *c) {
    kiln_gemm_params p = {trans_a, trans_b, alpha, beta};
    kiln_tensor *src[2] = {a, b};
    return kiln_run_op(be, KILN_OP_GEMM, &p, sizeof p, c, 2, src);
}
