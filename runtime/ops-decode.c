/* What the op implementations of every backend share: GEMM and concat decoding and the shape
   error message. Nothing here computes, so the backends depend on it and not on the op
   entry points (ops.c, ops-<family>.c), which compute through backend.c. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops-impl.h"

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

void kiln_concat_part(const kiln_tensor *dst, int i, int64_t *at, kiln_tensor *part) {
    kiln_concat_params p;
    memcpy(&p, dst->op_params, sizeof p);
    *part = *dst;
    part->shape[p.axis] = dst->src[i]->shape[p.axis];
    part->offset += (size_t)(*at * dst->stride[p.axis]);
    *at += part->shape[p.axis];
}
