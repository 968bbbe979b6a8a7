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

/* A matrix operand: 2-D, or 3-D batch; rows may be strided, elements of a row contiguous. */
static kiln_status check_matrix(const kiln_tensor *t, const char *role) {
    char d[64];
    kiln_tensor_describe(t, d, sizeof d);
    if (t->dtype != KILN_F32)
        return kiln_error(KILN_SHAPE, "gemm: %s is %s, only f32 is supported", role, d);
    if (t->ndim != 2 && t->ndim != 3)
        return kiln_error(KILN_SHAPE, "gemm: %s is %s, expected 2-D or 3-D (batch)", role, d);
    int r = t->ndim - 2;
    if (t->stride[r + 1] != 4)
        return kiln_error(KILN_SHAPE, "gemm: %s %s: elements of a row must be contiguous", role, d);
    if (t->stride[r] % 4 || t->stride[r] < 4 * t->shape[r + 1] ||
        (t->ndim == 3 && t->stride[0] % 4) || t->offset % 4)
        return kiln_error(KILN_SHAPE,
                          "gemm: %s %s: row stride %lld bytes is not a multiple of 4 bytes at "
                          "least the row length, or the offset is unaligned",
                          role, d, (long long)t->stride[r]);
    return KILN_OK;
}

kiln_status kiln_gemm_decode(const kiln_tensor *dst, kiln_gemm_desc *g) {
    const kiln_tensor *a = dst->src[0], *b = dst->src[1], *c = dst;
    kiln_gemm_params p;
    memcpy(&p, dst->op_params, sizeof p);
    memset(g, 0, sizeof *g);
    kiln_status st;
    if ((st = check_matrix(a, "A")) || (st = check_matrix(b, "B")) || (st = check_matrix(c, "C")))
        return st;
    g->trans_a = p.trans_a != 0;
    g->trans_b = p.trans_b != 0;
    g->alpha = p.alpha;
    g->beta = p.beta;
    g->a = a;
    g->b = b;
    g->c = c;
    int ra = a->ndim - 2, rb = b->ndim - 2, rc = c->ndim - 2;
    size_t am = (size_t)a->shape[ra + g->trans_a], ak = (size_t)a->shape[ra + !g->trans_a];
    size_t bk = (size_t)b->shape[rb + g->trans_b], bn = (size_t)b->shape[rb + !g->trans_b];
    g->m = (size_t)c->shape[rc];
    g->n = (size_t)c->shape[rc + 1];
    g->k = ak;
    g->batch = c->ndim == 3 ? (size_t)c->shape[0] : 1;
    if (am != g->m || bn != g->n || bk != ak) {
        char da[64], db[64], dc[64];
        kiln_tensor_describe(a, da, sizeof da);
        kiln_tensor_describe(b, db, sizeof db);
        kiln_tensor_describe(c, dc, sizeof dc);
        return kiln_error(KILN_SHAPE,
                          "gemm: op(A)=%zux%zu, op(B)=%zux%zu do not give C=%zux%zu "
                          "(A %s%s, B %s%s, C %s)",
                          am, ak, bk, bn, g->m, g->n, da, g->trans_a ? "^T" : "", db,
                          g->trans_b ? "^T" : "", dc);
    }
    const kiln_tensor *ops[3] = {a, b, c};
    size_t *off[3] = {&g->off_a, &g->off_b, &g->off_c};
    size_t *ld[3] = {&g->ld_a, &g->ld_b, &g->ld_c};
    size_t *bs[3] = {&g->stride_a, &g->stride_b, &g->stride_c};
    for (int i = 0; i < 3; i++) {
        const kiln_tensor *t = ops[i];
        *off[i] = t->offset / 4;
        *ld[i] = (size_t)t->stride[t->ndim - 2] / 4;
        *bs[i] = 0;
        if (t->ndim == 3) {
            if (t->shape[0] != 1 && (size_t)t->shape[0] != g->batch)
                return kiln_error(KILN_SHAPE, "gemm: %c has batch %lld, C has %zu", "ABC"[i],
                                  (long long)t -> shape[0], g -> batch);
            *bs[i] = t->shape[0] == 1 ? 0 : (size_t)t->stride[0] / 4;
        }
    }
    if (g->k == 0) return kiln_error(KILN_SHAPE, "gemm: the inner dimension K is 0");
    if (g->batch > 1 && g->stride_c == 0)
        return kiln_error(KILN_SHAPE, "gemm: C cannot be broadcast over the batch");
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

kiln_status kiln_shape_error(const kiln_tensor *t, const char *op, const char *role,
                             const char *fmt, ...) {
    char d[96], what[512];
    kiln_tensor_describe(t, d, sizeof d);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_SHAPE, "%s: %s%s%s is %s, %s", op, role, t->name[0] ? " " : "", t->name,
                      d, what);
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
