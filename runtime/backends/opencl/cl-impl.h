/* Internal: the OpenCL backend's context, program/kernel cache and helpers. Shared by the
   opencl and clblast backends (the clblast backend is this context with another GEMM). */
#ifndef KILN_CL_IMPL_H
#define KILN_CL_IMPL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../../backend-impl.h"

typedef struct kiln_cl_program {
    char file[64];
    char options[512];
    cl_program program;
    struct kiln_cl_program *next;
} kiln_cl_program;

typedef struct kiln_cl_kernel {
    char file[64];
    char name[64];
    char options[512];
    cl_kernel kernel;
    struct kiln_cl_kernel *next;
} kiln_cl_kernel;

typedef struct kiln_cl_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue; /* in-order */
    kiln_cl_program *programs;
    kiln_cl_kernel *kernels;
    cl_mem scratch;
    size_t scratch_size;
    kiln_backend_stats stats;
    void *gemm_tune; /* struct kiln_gemm_tune, filled on first GEMM */
    int oclgrind;    /* the Oclgrind simulator (see kiln_cl_workspace) */
    int host_shared; /* a CPU device whose buffers are host memory: maps copy nothing */
    int profiling;   /* KILN_PROFILE: the queue records kernel execution times */
    int cpu_kernels; /* the kernel variants written for CPUs (KILN_KERNELS, else CPU devices) */
    int fma;         /* KILN_MADD is fma() (hardware FMA), else mad() (see cl-program.c) */
    int own_cache;   /* the driver caches compiled kernels itself: no binaries (cl-program.c) */
    char device_name[128];
    /* The driver's cap on loop iterations per work-item (0: none), measured by
       kiln_cl_loop_budget on first use. */
    int loop_probed;
    unsigned long loop_limit;
} kiln_cl_ctx;

static inline kiln_cl_ctx *kiln_cl(kiln_backend_t be) {
    return (kiln_cl_ctx *)be->ctx;
}

/* The cl ids of the device kiln_devices_list lists at `index`. */
kiln_status kiln_cl_find_device(int index, cl_platform_id *p, cl_device_id *d);

/* How many loop iterations one work-item may run on this device (0: no limit): half the cap
   that kernels/probe.cl measures the first time it is asked. Host code that launches a kernel
   whose work-items loop over a data-dependent length splits the work to stay within it, or
   chooses another form. */
kiln_status kiln_cl_loop_budget(kiln_cl_ctx *cl, unsigned long *budget);

/* "CL_OUT_OF_RESOURCES" */
const char *kiln_cl_error_name(cl_int err);
/* Sets the thread-local error to "<what>: CL_XXX (code)" and returns KILN_OPENCL (or
   KILN_OUT_OF_MEMORY for allocation failures). */
kiln_status kiln_cl_fail(cl_int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Looks up (building on first use, through the disk cache) a kernel from kernels/<file>.
   The kernel is owned by the context. */
kiln_status kiln_cl_get_kernel(kiln_cl_ctx *cl, const char *file, const char *name,
                               const char *options, cl_kernel *out);
kiln_status kiln_cl_get_program(kiln_cl_ctx *cl, const char *file, const char *options,
                                cl_program *out);
void kiln_cl_release_programs(kiln_cl_ctx *cl);
/* A device buffer (every allocation goes through here); the caller releases it. */
kiln_status kiln_cl_workspace(kiln_cl_ctx *cl, size_t bytes, cl_mem *out);
/* A scratch buffer of at least `bytes`, valid until the next call (in-order queue). */
kiln_status kiln_cl_get_scratch(kiln_cl_ctx *cl, size_t bytes, cl_mem *out);

/* Sets n kernel arguments from (size_t size, const void *value) pairs:
   kiln_cl_args(k, "conv2d_direct", 2, sizeof(cl_mem), &mem, sizeof(cl_ulong), &off). */
kiln_status kiln_cl_args(cl_kernel k, const char *name, int n, ...);
/* Enqueues k on the backend's queue. global is rounded up to a multiple of local (kernels
   guard against the padding); local == NULL lets the driver choose. A local size the device
   or the kernel refuses is clamped to the queried limits and halved until accepted, never
   fatal. With KILN_SYNC=1 every launch is waited for and a failure names the kernel. */
kiln_status kiln_cl_launch(kiln_cl_ctx *cl, cl_kernel k, const char *name, cl_uint dims,
                           const size_t *global, const size_t *local);
/* A tensor's buffer and element offset, as kernels take them: (global T *base, ulong off). */
static inline cl_mem kiln_cl_mem(const kiln_tensor *t) {
    return (cl_mem)t->buffer->handle;
}
static inline cl_ulong kiln_cl_off(const kiln_tensor *t) {
    return (cl_ulong)(t->offset / kiln_dtype_size(t->dtype));
}

/* Embedded kernel sources (or read from the source tree in kernel-development builds). */
kiln_status kiln_kernel_source(const char *file, char **text, size_t *len);

#endif
