/* Internal: host side of kiln's own OpenCL SGEMM (kernels/gemm.cl): OpenCL handles and error
   codes, and the runtime's GEMM descriptor (kiln_gemm_desc, backend-impl.h) for the call. */
#ifndef KILN_CL_GEMM_LAUNCH_H
#define KILN_CL_GEMM_LAUNCH_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../../backend-impl.h"

struct kiln_gemm_tune {
    const char *build_options; /* points into options_buf; re-point after copying */
    char options_buf[128];
    unsigned tile_m, tile_n, vec_n, k_unroll; /* kernel tunables (become -D options) */
    unsigned wg_m, wg_n;                      /* local size of kiln_gemm_compute */
    unsigned pack_wg;                         /* local size (dim 0) of kiln_gemm_pack_a/_b */
    unsigned direct_a;       /* 1: read A in place (a transposed A only while small) */
    unsigned direct_b_max_m; /* read a non-transposed B in place when m <= this */
    /* Loop iterations a work-item may run (0: unlimited); longer k runs in several passes. */
    unsigned long loop_budget;
};

/* Default tunables for a device (a table keyed by device type, limits queried from `dev`),
   then `override` (the value of KILN_TUNE_GEMM, e.g. "TILE_M=8,TILE_N=32"; NULL: none) on top;
   a bad override is CL_INVALID_VALUE.
   Names: TILE_M TILE_N VEC_N K_UNROLL WG_M WG_N PACK_WG DIRECT_A DIRECT_B_M. */
cl_int kiln_gemm_tune_for_device(cl_device_id dev, const char *override,
                                 struct kiln_gemm_tune *out);

/* Returns a cached kernel from kernels/gemm.cl built with build_options (not to be released). */
typedef cl_kernel (*kiln_gemm_get_kernel_fn)(void *user, const char *kernel_name,
                                             const char *build_options, cl_int *err);
/* Returns a scratch buffer of at least `bytes`, valid until the next call (not to be released). */
typedef cl_mem (*kiln_gemm_get_scratch_fn)(void *user, size_t bytes, cl_int *err);

/* Enqueues C = alpha*op(A)*op(B) + beta*C on the in-order queue q (non-blocking), the GEMM
   that kiln_gemm_decode described (row-major, in elements; a batch stride of 0 broadcasts that
   operand; a, b and c on buffers of this OpenCL backend). beta == 0 never reads C. */
cl_int kiln_gemm_enqueue(cl_command_queue q, const struct kiln_gemm_tune *tune,
                         kiln_gemm_get_kernel_fn get_kernel, kiln_gemm_get_scratch_fn get_scratch,
                         void *user, const kiln_gemm_desc *call);

#endif
