/* Internal: the backend object, its vtable and the op tables. */
#ifndef KILN_BACKEND_IMPL_H
#define KILN_BACKEND_IMPL_H

#include "kiln/backend.h"
#include "kiln/log.h"
#include "shared/kiln-util.h"

/* An op implementation: computes dst->op into dst. Validation already happened. */
typedef kiln_status (*kiln_op_fn)(kiln_backend_t be, kiln_tensor *dst);

struct kiln_backend_iface {
    /* Allocates `bytes` of storage; *handle is backend specific (host pointer, cl_mem). */
    kiln_status (*buffer_alloc)(kiln_backend_t be, size_t bytes, void **handle);
    void (*buffer_free)(kiln_backend_t be, void *handle);
    /* Host address of the storage, or NULL when it lives on a device. */
    void *(*buffer_host_ptr)(kiln_backend_t be, void *handle);
    /* Copies host -> storage. ev == NULL: blocking. Otherwise *ev may receive an event
       (or NULL when the copy already completed). */
    kiln_status (*write)(kiln_backend_t be, void *handle, size_t off, const void *src, size_t n,
                         kiln_event_t *ev);
    /* Copies storage -> host, same event rules. */
    kiln_status (*read)(kiln_backend_t be, void *handle, size_t off, void *dst, size_t n,
                        kiln_event_t *ev);
    /* Copies within this backend's storage. */
    kiln_status (*copy)(kiln_backend_t be, void *dst, size_t dst_off, void *src, size_t src_off,
                        size_t n);
    /* Waits for all queued work. */
    kiln_status (*synchronize)(kiln_backend_t be);
    /* Optional: waits on / frees an event this backend returned. */
    kiln_status (*event_wait)(kiln_backend_t be, void *event);
    void (*event_free)(kiln_backend_t be, void *event);
    /* Optional: maps a whole buffer into host memory without copying (devices that share
       host memory, e.g. CPU OpenCL devices), after all queued work on it; NULL when the
       device cannot (the host fallback then stages copies). unmap releases the mapping. */
    void *(*map)(kiln_backend_t be, void *handle, size_t size);
    void (*unmap)(kiln_backend_t be, void *handle, void *ptr);
    /* Optional: program-cache counters. */
    void (*stats)(kiln_backend_t be, kiln_backend_stats *out);
    /* Optional: the device limits this backend plans its kernels by (local memory, work-group
       sizes, loop limits measured by self-checks) and the tiles it chose, as text. */
    kiln_status (*limits)(kiln_backend_t be, char *buf, size_t n);
    /* Frees ctx. */
    void (*free)(kiln_backend_t be);
};

struct kiln_backend {
    const struct kiln_backend_iface *iface;
    void *ctx;
    char name[16]; /* base: cpu | opencl | clblast */
    kiln_device_info device;
    kiln_op_fn ops[KILN_OP_COUNT];
    const char *provider[KILN_OP_COUNT]; /* the first choice for the op (or "auto") */
    int impl[KILN_OP_COUNT];             /* its index in backend.c's chain, -1 for auto */
    const char *ran; /* the implementation the last kiln_compute ran (KILN_PROFILE's column) */
    struct kiln_backend *host; /* cpu backend for host fallback, created on first need */
    size_t allocated;          /* bytes in live buffers, for the free-memory estimate */
    struct kiln_tuner *tuner;  /* auto backend: per-shape choices among implementations */
    int tune_measured, tune_loaded;
};

/* A file embedded at build time (runtime/cmake/embed-kernels.cmake: the kernels, the zoo). */
struct kiln_embedded_file {
    const char *file;
    const unsigned char *data;
    size_t len;
};

struct kiln_buffer {
    kiln_backend_t be;
    void *handle;
    size_t size;
};

struct kiln_event {
    kiln_backend_t be;
    void *handle;
};

/* Whether an implementation can compute this tensor (shape, params, the device's limits); an
   implementation with no such function takes every tensor of its op. A tensor it refuses goes
   down the fallback chain (backend.c). */
typedef int (*kiln_supports_fn)(kiln_backend_t be, const kiln_tensor *dst);

/* Op tables, filled with designated initialisers; an empty slot means unsupported. */
extern const kiln_op_fn kiln_cpu_ops[KILN_OP_COUNT];
extern const kiln_op_fn kiln_cl_ops[KILN_OP_COUNT];
extern const kiln_op_fn kiln_clblast_ops[KILN_OP_COUNT];
extern const kiln_supports_fn kiln_clblast_supports[KILN_OP_COUNT];

/* Other algorithms of a backend's op that auto weighs against its default one per shape
   (opencl's Winograd convolutions); a list ended by fn == NULL. */
typedef struct {
    kiln_op op;
    kiln_op_fn fn;
    kiln_supports_fn supports;
    const char *name;
} kiln_op_variant;
extern const kiln_op_variant kiln_cl_variants[];

/* Backend constructors: fill iface/ctx/device of a zeroed backend. */
kiln_status kiln_cpu_backend_setup(kiln_backend_t be);
kiln_status kiln_cl_backend_setup(kiln_backend_t be, const kiln_device_info *dev);
/* Whether CLBlast is usable on this opencl backend's device. */
int kiln_clblast_available(kiln_backend_t be);

/* The auto backend (tune.c): candidates per op, measured per shape on first use. */
#define KILN_TUNE_MAX 8
kiln_status kiln_tuner_init(kiln_backend_t be);
/* supports: NULL when the candidate takes every tensor of the op. An op with more than
   KILN_TUNE_MAX candidates is an internal error (none is dropped unmeasured). */
kiln_status kiln_tuner_add(kiln_backend_t be, kiln_op op, kiln_op_fn fn, kiln_supports_fn supports,
                           const char *name);
/* Loads persisted choices once every candidate is added. */
void kiln_tuner_ready(kiln_backend_t be);
/* A hash of the OpenCL kernel sources this build embeds (backends/opencl/cl-source.c): the
   tuning results of other kernels are not this build's. */
uint64_t kiln_kernels_hash(void);
void kiln_tuner_free(kiln_backend_t be);
kiln_status kiln_auto_dispatch(kiln_backend_t be, kiln_tensor *dst);

/* Runs an op on the host cpu backend with copies of the device tensors (the end of the
   fallback chain for device backends). */
kiln_status kiln_host_fallback(kiln_backend_t be, kiln_tensor *dst);

/* Fault injection for tests: the nth buffer allocation from now fails (0 disables). The
   environment form is KILN_FAULT_ALLOC=N (the Nth allocation of the process). */
void kiln_fault_alloc_after(long n);

/* Host address of element 0 of a tensor on a host buffer. */
void *kiln_tensor_host_data(const kiln_tensor *t);

/* Per-op validation shared by all backends. */
kiln_status kiln_op_validate(kiln_backend_t be, const kiln_tensor *dst);

/* GEMM decoded from tensors into element units, shared by every backend. */
typedef struct kiln_gemm_desc {
    int trans_a, trans_b;
    size_t m, n, k, batch;
    float alpha, beta;
    const kiln_tensor *a, *b, *c;
    size_t off_a, ld_a, stride_a; /* elements; stride 0 = broadcast */
    size_t off_b, ld_b, stride_b;
    size_t off_c, ld_c, stride_c;
} kiln_gemm_desc;
kiln_status kiln_gemm_decode(const kiln_tensor *dst, kiln_gemm_desc *d);

/* <cache>/<sub> for compiled programs and tuning results (KILN_CACHE_DIR, else
   $XDG_CACHE_HOME/kiln, else ~/.cache/kiln), created if missing. *enabled = 0 when
   KILN_CACHE_DIR=off or the directory cannot be created (warned once, never fatal). */
void kiln_cache_dir(const char *sub, char *out, size_t n, int *enabled);

/* Runs fn on dst; under KILN_PROFILE also times it (synchronised) for the exit report. */
kiln_status kiln_profile_run(kiln_backend_t be, kiln_op_fn fn, kiln_tensor *dst);
/* Whether KILN_PROFILE is on; backends then report each device kernel's execution time. */
int kiln_profile_enabled(void);
void kiln_profile_kernel(const char *name, double seconds);

#endif
