/* The opencl backend's GEMM op: decodes tensors and hands them to kiln's own kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl-gemm-launch.h"
#include "cl-ops.h"

/* The launch code speaks plain OpenCL; these adapters carry kiln's error detail across. */
static cl_kernel get_kernel(void *user, const char *name, const char *options, cl_int *err) {
    cl_kernel k = NULL;
    kiln_status st = kiln_cl_get_kernel(user, "gemm.cl", name, options, &k);
    *err = st == KILN_OK      ? CL_SUCCESS
           : st == KILN_BUILD ? CL_BUILD_PROGRAM_FAILURE
                              : CL_INVALID_PROGRAM;
    return k;
}

static cl_mem get_scratch(void *user, size_t bytes, cl_int *err) {
    cl_mem m = NULL;
    *err = kiln_cl_get_scratch(user, bytes, &m) == KILN_OK ? CL_SUCCESS
                                                           : CL_MEM_OBJECT_ALLOCATION_FAILURE;
    return m;
}

static kiln_status gemm_tune(kiln_backend_t be, const struct kiln_gemm_tune **out) {
    kiln_cl_ctx *cl = kiln_cl(be);
    if (!cl->gemm_tune) {
        struct kiln_gemm_tune *t = calloc(1, sizeof *t);
        if (!t) return kiln_error(KILN_OUT_OF_MEMORY, "gemm: out of host memory");
        /* KILN_TUNE_GEMM is read here alone, once per backend (the tunables are kept). */
        const char *override = getenv("KILN_TUNE_GEMM");
        cl_int err = kiln_gemm_tune_for_device(cl->device, override, t);
        if (err != CL_SUCCESS) {
            free(t);
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "KILN_TUNE_GEMM='%s' is not valid for gemm.cl (names: TILE_M, "
                              "TILE_N, VEC_N, K_UNROLL, WG_M, WG_N, PACK_WG, DIRECT_A, "
                              "DIRECT_B_M)",
                              override ? override : "");
        }
        t->build_options = t->options_buf;
        kiln_status st = kiln_cl_loop_budget(cl, &t->loop_budget);
        if (st) {
            free(t);
            return st;
        }
        cl->gemm_tune = t;
    }
    *out = cl->gemm_tune;
    return KILN_OK;
}

kiln_status kiln_cl_gemm(kiln_backend_t be, kiln_tensor *dst) {
    kiln_gemm_desc g;
    kiln_status st = kiln_gemm_decode(dst, &g);
    if (st) return st;
    const struct kiln_gemm_tune *tune = NULL;
    if ((st = gemm_tune(be, &tune))) return st;
    kiln_clear_error();
    cl_int err = kiln_gemm_enqueue(kiln_cl(be)->queue, tune, get_kernel, get_scratch, be->ctx, &g);
    if (err == CL_SUCCESS) return KILN_OK;
    /* A kernel-build or scratch failure already left its detail (the build log). */
    if (*kiln_last_error()) return err == CL_BUILD_PROGRAM_FAILURE ? KILN_BUILD : KILN_OPENCL;
    return kiln_cl_fail(err, "gemm %zux%zux%zu (batch %zu) on %s", g.m, g.n, g.k, g.batch,
                        be->device.name);
}

kiln_status kiln_cl_gemm_describe(kiln_backend_t be, char *buf, size_t n) {
    const struct kiln_gemm_tune *t = NULL;
    kiln_status st = gemm_tune(be, &t);
    if (st) return st;
    snprintf(buf, n, "%ux%u tile per work-item, float%u vectors, work-group %ux%u (%s)", t->tile_m,
             t->tile_n, t->vec_n, t->wg_m, t->wg_n, t->build_options);
    return KILN_OK;
}
