/* GEMM cases: sizes that match no tile, every transpose, alpha/beta, leading dimensions and
   offsets, strided batches with broadcasts, and beta == 0 over a NaN-filled C. */
#include <string.h>

#include "bench-cases.h"
#include "harness.h"

typedef struct gemm_case {
    int m, n, k, ta, tb, batch, pad, bcast_a, bcast_b, nan_c;
    float alpha, beta;
} gemm_case;

static kiln_status gemm_build(const tcase *c, tctx *x) {
    const gemm_case *g = (const void *)c->p;
    int ra = g->ta ? g->k : g->m, ca = g->ta ? g->m : g->k;
    int rb = g->tb ? g->n : g->k, cb = g->tb ? g->k : g->n;
    kiln_status st;
    if ((st = kiln_case_matrix(c, x, 0, g->bcast_a ? 1 : g->batch, ra, ca, g->pad, 0)) ||
        (st = kiln_case_matrix(c, x, 1, g->bcast_b ? 1 : g->batch, rb, cb, g->pad, 0)) ||
        (st = kiln_case_matrix(c, x, 2, g->batch, g->m, g->n, g->pad, g->nan_c)))
        return st;
    kiln_case_output_is_input(x, 2);
    kiln_gemm_params p = {g->ta, g->tb, g->alpha, g->beta};
    kiln_case_node(x, KILN_OP_GEMM, &p, sizeof p, 0x3);
    return KILN_OK;
}

static void gemm_forward_f64(const tcase *c, double *const *in, double *out) {
    const gemm_case *g = (const void *)c->p;
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            double s = 0;
            for (int l = 0; l < g->k; l++) {
                double a = g->ta ? in[0][l * g->m + i] : in[0][i * g->k + l];
                double b = g->tb ? in[1][j * g->k + l] : in[1][l * g->n + j];
                s += a * b;
            }
            /* beta == 0 ignores C, as BLAS does (C may hold NaN). */
            out[i * g->n + j] = g->alpha * s + (g->beta != 0 ? g->beta * in[2][i * g->n + j] : 0);
        }
}

/* dop(A) = alpha dC op(B)^T and dop(B) = alpha op(A)^T dC, written for each transpose. */
static kiln_status gemm_backward(const tcase *c, tctx *x, kiln_tensor *dc, kiln_tensor *grads) {
    const gemm_case *g = (const void *)c->p;
    kiln_tensor *a = &x->in[0], *b = &x->in[1];
    kiln_status st = g->ta ? kiln_gemm(x->be, g->tb, 1, g->alpha, b, dc, 0.0f, &grads[0])
                           : kiln_gemm(x->be, 0, !g->tb, g->alpha, dc, b, 0.0f, &grads[0]);
    if (st) return st;
    return g->tb ? kiln_gemm(x->be, 1, g->ta, g->alpha, dc, a, 0.0f, &grads[1])
                 : kiln_gemm(x->be, !g->ta, 0, g->alpha, a, dc, 0.0f, &grads[1]);
}

static const op_kind gemm_kind = {.family = "gemm",
                                  .build = gemm_build,
                                  .forward_f64 = gemm_forward_f64,
                                  .backward = gemm_backward,
                                  .grad_mask = 0x3};
/* Strided batches are compared but not gradient-checked (the backward above is 2-D). */
static const op_kind gemm_batch_kind = {.family = "gemm", .build = gemm_build};

static void add(gemm_case g) {
    if (!g.batch) g.batch = 1;
    int small = (long)g.m * g.n * g.k * g.batch <= 4096;
    kiln_add_case(g.batch > 1 ? &gemm_batch_kind : &gemm_kind, &g, sizeof g, small,
                  "gemm m=%d n=%d k=%d ta=%d tb=%d alpha=%g beta=%g batch=%d%s%s%s%s", g.m, g.n,
                  g.k, g.ta, g.tb, g.alpha, g.beta, g.batch, g.pad ? " padded" : "",
                  g.bcast_a ? " bcastA" : "", g.bcast_b ? " bcastB" : "", g.nan_c ? " C=NaN" : "");
}

void kiln_cases_gemm(void) {
    static const int sizes[][3] = {{1, 1, 1},      {3, 5, 7},     {7, 3, 5},
                                   {16, 16, 16},   {1, 300, 17},  {300, 1, 17},
                                   {127, 129, 65}, {64, 96, 128}, {33, 65, 257}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int t = 0; t < 4; t++)
            add((gemm_case){.m = sizes[i][0],
                            .n = sizes[i][1],
                            .k = sizes[i][2],
                            .ta = t & 1,
                            .tb = t >> 1,
                            .alpha = 1.0f});
    add((gemm_case){.m = 13, .n = 7, .k = 3, .alpha = -0.7f, .beta = 0.5f});
    add((gemm_case){.m = 127, .n = 129, .k = 65, .ta = 1, .alpha = 1.5f, .beta = -1.0f});
    add((gemm_case){.m = 33, .n = 17, .k = 9, .alpha = 1.0f, .nan_c = 1});
    add((gemm_case){.m = 3, .n = 5, .k = 7, .tb = 1, .alpha = 2.0f, .nan_c = 1});
    add((gemm_case){.m = 3, .n = 5, .k = 7, .pad = 1, .alpha = 1.0f, .beta = 0.25f});
    add((gemm_case){.m = 127, .n = 129, .k = 65, .ta = 1, .tb = 1, .pad = 1, .alpha = 1.0f});
    add((gemm_case){.m = 5, .n = 4, .k = 3, .ta = 1, .pad = 1, .alpha = 0.5f, .beta = 1.0f});
    add((gemm_case){.m = 3, .n = 5, .k = 7, .batch = 3, .alpha = 1.0f});
    add((gemm_case){
        .m = 31, .n = 17, .k = 29, .batch = 4, .ta = 1, .pad = 1, .alpha = 1.0f, .beta = 0.5f});
    add((gemm_case){.m = 20, .n = 9, .k = 11, .batch = 3, .bcast_a = 1, .alpha = 1.0f});
    add((gemm_case){.m = 9, .n = 20, .k = 11, .batch = 5, .bcast_b = 1, .tb = 1, .alpha = 1.0f});
    add((gemm_case){.m = 300, .n = 257, .k = 513, .alpha = 1.0f});
    add((gemm_case){.m = 64, .n = 784, .k = 576, .tb = 1, .alpha = 1.0f});
    /* k past the 65535 loop iterations per work-item that some drivers allow (Mesa's
       llvmpipe): kiln splits k there (cl-gemm-launch.c), transposed or not. */
    add((gemm_case){.m = 9, .n = 33, .k = 70001, .alpha = 1.0f, .beta = 0.5f});
    add((gemm_case){.m = 9, .n = 33, .k = 70001, .ta = 1, .tb = 1, .alpha = 1.0f});
    /* the `kiln bench` GEMM sweep (perf/bench-cases.h) */
    int s[3];
    for (int i = 0; kiln_bench_gemm_shape(i, s); i++)
        add((gemm_case){.m = s[0], .n = s[1], .k = s[2], .alpha = 1.0f});
}
