/* Backends (cpu, opencl, clblast), device discovery and selection, and op dispatch. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stddef.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices ---- */

typedef enum {
    KILN_DEVICE_HOST,
    KILN_DEVICE_CPU,
    KILN_DEVICE_GPU,
    KILN_DEVICE_ACCEL
} kiln_device_type;

typedef struct kiln_device_info {
    int index;          /* flat index over all platforms, as `kiln devices` lists them */
    int platform_index; /* -1 for the host */
    int device_index;
    kiln_device_type type;
    char platform[128];
    char platform_version[128];
    char vendor[128];
    char name[128];
    char driver_version[64];
    char opencl_c_version[64];
    unsigned compute_units;
    unsigned long long global_mem;
    unsigned long long local_mem;
    unsigned long long max_alloc;
    size_t max_work_group;
    size_t max_work_item[3];
    unsigned clock_mhz;
    int fp16, fp64;
    unsigned pref_vec_float;
    int fma; /* fused multiply-add in hardware (CL_FP_FMA); without it kernels use mad() */
} kiln_device_info;

/* Lists OpenCL devices. With no OpenCL platform (or no ICD loader answer) returns 0 devices
   and KILN_OK: the host cpu backend is always there. *list is malloc'ed. */
kiln_status kiln_devices_list(kiln_device_info **list, int *count);
/* The list index of the k-th device (modulo their count) of the kind the default selection
   takes (a GPU, else an accelerator, else a CPU; Oclgrind only alone), -1 when none: data
   parallel ranks on one host take device k = their local rank. */
int kiln_devices_default_nth(const kiln_device_info *devs, int n, int k);
const char *kiln_device_type_name(kiln_device_type t);

/* ---- backend selection ---- */

typedef struct kiln_selection {
    char backend_spec[256]; /* as given, e.g. "opencl,gemm=clblast" or "auto" */
    char device_spec[128];  /* as given, e.g. "1:0", "nvidia", "" */
    int device_index;       /* flat index of the chosen OpenCL device, -1 for the host */
    char base[16];          /* resolved base backend: cpu | opencl | clblast */
    char why[512];          /* why this device and backend were chosen */
} kiln_selection;

/* Resolves backend and device specs (NULL = read KILN_BACKEND / KILN_DEVICE). Unknown values
   fail with KILN_INVALID_ARGUMENT / KILN_NO_DEVICE and the valid choices in kiln_last_error. */
kiln_status kiln_select(const char *backend_spec, const char *device_spec, kiln_selection *sel);

/* Creates a backend from specs (NULL = environment). */
kiln_status kiln_backend_init(const char *backend_spec, const char *device_spec,
                              kiln_backend_t *out);
kiln_status kiln_backend_init_from_env(kiln_backend_t *out);
void kiln_backend_free(kiln_backend_t be);

/* "cpu", "opencl", "clblast" (the base of the op table). */
const char *kiln_backend_name(kiln_backend_t be);
/* The device this backend runs on (type HOST for cpu). */
const kiln_device_info *kiln_backend_device(kiln_backend_t be);
/* Measures the peak fp32 GFLOP/s of an OpenCL backend's device (chains of multiply-adds,
   kernels/peak.cl), so throughput figures can be read as a fraction of it. KILN_UNSUPPORTED on
   a host (cpu) backend. */
kiln_status kiln_backend_peak_gflops(kiln_backend_t be, double *gflops);
/* Which implementation serves `op` on this backend: "cpu", "opencl", "clblast", "auto"
   (measured per shape), or NULL. */
const char *kiln_backend_op_provider(kiln_backend_t be, kiln_op op);
/* Where the op's tensors go that its provider cannot compute (a shape CLBlast cannot express),
   or NULL when the provider takes every tensor of the op. */
const char *kiln_backend_op_fallback(kiln_backend_t be, kiln_op op);
/* The implementation ("clblast", "opencl", "cpu") the last kiln_compute on be ran, after auto
   and per-tensor fallbacks; NULL before the first. */
const char *kiln_backend_last_impl(kiln_backend_t be);
kiln_status kiln_backend_synchronize(kiln_backend_t be);

/* Program-cache counters of an OpenCL backend since it was created (zeros for cpu). */
typedef struct kiln_backend_stats {
    int programs_compiled; /* built from source */
    int programs_driver;   /* built from source by a driver with its own cache (PoCL), which
                              compiles only what it has not cached; kiln's cache holds none */
    int programs_loaded;   /* loaded from the on-disk cache */
    int cache_rejected;    /* corrupt or unusable cache entries removed and rebuilt */
    int cache_stored;      /* programs written to the cache */
    int tune_measured;     /* auto: op shapes measured in this process */
    int tune_loaded;       /* auto: choices loaded from the cache */
} kiln_backend_stats;
void kiln_backend_get_stats(kiln_backend_t be, kiln_backend_stats *out);
/* The device limits the backend plans its kernels by and the tiles it chose, as lines of text
   ("none" for the host backend); runs the driver self-checks that have not run yet. */
kiln_status kiln_backend_limits(kiln_backend_t be, char *buf, size_t n);

/* ---- buffers ---- */

kiln_status kiln_buffer_alloc(kiln_backend_t be, size_t bytes, kiln_buffer_t *out);
void kiln_buffer_free(kiln_buffer_t buf);
size_t kiln_buffer_size(kiln_buffer_t buf);
kiln_backend_t kiln_buffer_backend(kiln_buffer_t buf);

/* ---- ops ---- */

/* Runs dst->op from dst->src and dst->op_params into dst's storage. */
kiln_status kiln_compute(kiln_backend_t be, kiln_tensor *dst);

typedef struct kiln_gemm_params {
    int trans_a, trans_b;
    float alpha, beta;
} kiln_gemm_params;

/* C = alpha * op(A) * op(B) + beta * C. Matrices are 2-D, or 3-D for a strided batch whose
   outer stride may be 0 (broadcast); rows may have any stride (the leading dimension) but
   elements of a row are contiguous. */
kiln_status kiln_gemm(kiln_backend_t be, int trans_a, int trans_b, float alpha, kiln_tensor *a,
                      kiln_tensor *b, float beta, kiln_tensor *c);

#ifdef __cplusplus
}
#endif
#endif
