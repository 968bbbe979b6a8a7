/* GEMM on the host through OpenBLAS's cblas. */
#include <cblas.h>

#include "cpu-ops.h"

kiln_status kiln_cpu_gemm(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    kiln_gemm_desc g;
    kiln_status st = kiln_gemm_decode(dst, &g);
    if (st) return st;
    /* Offsets are already inside the host pointers; only batch strides remain. */
    const float *a = kiln_tensor_host_data(g.a);
    const float *b = kiln_tensor_host_data(g.b);
    float *c = kiln_tensor_host_data(g.c);
    if (!a || !b || !c) return kiln_error(KILN_INTERNAL, "cpu gemm: tensor not in host memory");
    if (!g.m || !g.n) return KILN_OK;
    for (size_t i = 0; i < g.batch; i++) {
        float *ci = c + i * g.stride_c;
        cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                    g.trans_b ? CblasTrans : CblasNoTrans, (blasint)g.m, (blasint)g.n, (blasint)g.k,
                    g.alpha, a + i * g.stride_a, (blasint)g.ld_a, b + i * g.stride_b,
                    (blasint)g.ld_b, g.beta, ci, (blasint)g.ld_c);
    }
    return KILN_OK;
}
