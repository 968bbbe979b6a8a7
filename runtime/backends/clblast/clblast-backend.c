/* The clblast backend: the opencl backend's context and kernels, with GEMM through CLBlast.
   Only the ops CLBlast has are listed here; the rest resolve to the opencl implementation
   through the fallback chain (shared code, not a copy). */
#include <clblast_c.h>

#include "../opencl/cl-ops.h"

static const char *clblast_status_name(CLBlastStatusCode s) {
    switch (s) {
    case CLBlastNotImplemented:
        return "CLBlastNotImplemented";
    case CLBlastInvalidMatrixA:
        return "CLBlastInvalidMatrixA";
    case CLBlastInvalidMatrixB:
        return "CLBlastInvalidMatrixB";
    case CLBlastInvalidMatrixC:
        return "CLBlastInvalidMatrixC";
    case CLBlastInvalidLocalMemUsage:
        return "CLBlastInvalidLocalMemUsage";
    case CLBlastNoHalfPrecision:
        return "CLBlastNoHalfPrecision";
    case CLBlastInsufficientMemoryA:
        return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB:
        return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC:
        return "CLBlastInsufficientMemoryC";
    case CLBlastInvalidBatchCount:
        return "CLBlastInvalidBatchCount";
    case CLBlastInvalidOverrideKernel:
        return "CLBlastInvalidOverrideKernel";
    case CLBlastMissingOverrideParameter:
        return "CLBlastMissingOverrideParameter";
    case CLBlastInvalidLocalThreadsTotal:
        return "CLBlastInvalidLocalThreadsTotal";
    case CLBlastInvalidLocalThreadsDim:
        return "CLBlastInvalidLocalThreadsDim";
    case CLBlastInvalidGlobalOffset:
        return "CLBlastInvalidGlobalOffset";
    case CLBlastUnexpectedError:
        return "CLBlastUnexpectedError";
    default:
        return kiln_cl_error_name((cl_int)s);
    }
}

kiln_status kiln_clblast_gemm(kiln_backend_t be, kiln_tensor *dst) {
    kiln_gemm_desc g;
    kiln_status st = kiln_gemm_decode(dst, &g);
    if (st) return st;
    if (!g.m || !g.n || !g.batch) return KILN_OK;
    kiln_cl_ctx *cl = kiln_cl(be);
    cl_mem a = g.a->buffer->handle, b = g.b->buffer->handle, c = g.c->buffer->handle;
    CLBlastTranspose ta = g.trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = g.trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode s = CLBlastSuccess;
    if (g.batch > 1 && g.stride_a && g.stride_b) {
        s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, g.m, g.n, g.k, g.alpha, a,
                                       g.off_a, g.ld_a, g.stride_a, b, g.off_b, g.ld_b, g.stride_b,
                                       g.beta, c, g.off_c, g.ld_c, g.stride_c, g.batch, &cl->queue,
                                       NULL);
    } else {
        /* A broadcast operand (stride 0): one call per matrix. */
        for (size_t i = 0; i < g.batch && s == CLBlastSuccess; i++)
            s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, g.m, g.n, g.k, g.alpha, a,
                             g.off_a + i * g.stride_a, g.ld_a, b, g.off_b + i * g.stride_b, g.ld_b,
                             g.beta, c, g.off_c + i * g.stride_c, g.ld_c, &cl->queue, NULL);
    }
    if (s != CLBlastSuccess)
        return kiln_error(s == CLBlastOpenCLOutOfResources || s == CLBlastOpenCLOutOfHostMemory
                              ? KILN_OUT_OF_MEMORY
                              : KILN_OPENCL,
                          "CLBlast sgemm %zux%zux%zu (batch %zu) on %s: %s (%d)", g.m, g.n, g.k,
                          g.batch, be->device.name, clblast_status_name(s), (int)s);
    return KILN_OK;
}

const kiln_op_fn kiln_clblast_ops[KILN_OP_COUNT] = {
    [KILN_OP_GEMM] = kiln_clblast_gemm,
    [KILN_OP_CONV2D] = kiln_clblast_conv2d,
    [KILN_OP_CONV2D_BWD_DATA] = kiln_clblast_conv2d_bwd_data,
};

const kiln_supports_fn kiln_clblast_supports[KILN_OP_COUNT] = {
    [KILN_OP_CONV2D] = kiln_clblast_supports_conv2d,
    [KILN_OP_CONV2D_BWD_DATA] = kiln_clblast_supports_conv2d_bwd_data,
};

int kiln_clblast_available(kiln_backend_t be) {
    return be->ctx != NULL;
}
