/* The opencl backend: one context and in-order queue on one device, kiln's own kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl-ops.h"

static kiln_status cl_alloc(kiln_backend_t be, size_t bytes, void **handle) {
    kiln_cl_ctx *cl = kiln_cl(be);
    if (be->device.max_alloc && bytes > be->device.max_alloc)
        return kiln_error(KILN_OUT_OF_MEMORY,
                          "cannot allocate %zu bytes on %s: the device's largest single "
                          "allocation is %llu bytes (global memory %llu bytes)",
                          bytes, be->device.name, be->device.max_alloc, be->device.global_mem);
    cl_mem m;
    kiln_status st = kiln_cl_workspace(cl, bytes, &m);
    if (st) {
        kiln_error_append(" [device %s, global memory %llu bytes]", be->device.name,
                          be->device.global_mem);
        return st;
    }
    *handle = m;
    return KILN_OK;
}

static void cl_free_buffer(kiln_backend_t be, void *handle) {
    (void)be;
    if (handle) clReleaseMemObject((cl_mem)handle);
}

static kiln_status wrap_event(kiln_backend_t be, cl_event e, kiln_event_t *ev) {
    *ev = malloc(sizeof **ev);
    if (!*ev) {
        clWaitForEvents(1, &e);
        clReleaseEvent(e);
        return KILN_OK; /* completed synchronously instead */
    }
    (*ev)->be = be;
    (*ev)->handle = e;
    return KILN_OK;
}

static kiln_status cl_write(kiln_backend_t be, void *handle, size_t off, const void *src, size_t n,
                            kiln_event_t *ev) {
    cl_event e = NULL;
    cl_int err = clEnqueueWriteBuffer(kiln_cl(be)->queue, (cl_mem)handle, ev ? CL_FALSE : CL_TRUE,
                                      off, n, src, 0, NULL, ev ? &e : NULL);
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "writing %zu bytes to %s", n, be->device.name);
    return ev ? wrap_event(be, e, ev) : KILN_OK;
}

static kiln_status cl_read(kiln_backend_t be, void *handle, size_t off, void *dst, size_t n,
                           kiln_event_t *ev) {
    cl_event e = NULL;
    cl_int err = clEnqueueReadBuffer(kiln_cl(be)->queue, (cl_mem)handle, ev ? CL_FALSE : CL_TRUE,
                                     off, n, dst, 0, NULL, ev ? &e : NULL);
    if (err != CL_SUCCESS)
        return kiln_cl_fail(err, "reading %zu bytes from %s", n, be->device.name);
    return ev ? wrap_event(be, e, ev) : KILN_OK;
}

static kiln_status cl_copy(kiln_backend_t be, void *dst, size_t dst_off, void *src, size_t src_off,
                           size_t n) {
    cl_int err = clEnqueueCopyBuffer(kiln_cl(be)->queue, (cl_mem)src, (cl_mem)dst, src_off, dst_off,
                                     n, 0, NULL, NULL);
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "copying %zu bytes on %s", n, be->device.name);
    return KILN_OK;
}

static kiln_status cl_sync(kiln_backend_t be) {
    cl_int err = clFinish(kiln_cl(be)->queue);
    /* Errors of earlier asynchronous kernels surface here. */
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "waiting for %s", be->device.name);
    return KILN_OK;
}

static kiln_status cl_event_wait(kiln_backend_t be, void *event) {
    cl_event e = event;
    cl_int err = clWaitForEvents(1, &e);
    if (err != CL_SUCCESS)
        return kiln_cl_fail(err, "waiting for a transfer on %s", be->device.name);
    return KILN_OK;
}

static void cl_event_free(kiln_backend_t be, void *event) {
    (void)be;
    clReleaseEvent((cl_event)event);
}

static void cl_free(kiln_backend_t be) {
    kiln_cl_ctx *cl = kiln_cl(be);
    if (!cl) return;
    if (cl->queue) clFinish(cl->queue);
    kiln_cl_release_programs(cl);
    if (cl->scratch) clReleaseMemObject(cl->scratch);
    free(cl->gemm_tune);
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->context) clReleaseContext(cl->context);
    free(cl);
    be->ctx = NULL;
}

static void cl_stats(kiln_backend_t be, kiln_backend_stats *out) {
    *out = kiln_cl(be)->stats;
}

static void *cl_map(kiln_backend_t be, void *handle, size_t size) {
    kiln_cl_ctx *cl = kiln_cl(be);
    if (!cl->host_shared) return NULL;
    cl_int err;
    void *p = clEnqueueMapBuffer(cl->queue, (cl_mem)handle, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                 size, 0, NULL, NULL, &err);
    return err == CL_SUCCESS ? p : NULL;
}

static void cl_unmap(kiln_backend_t be, void *handle, void *ptr) {
    clEnqueueUnmapMemObject(kiln_cl(be)->queue, (cl_mem)handle, ptr, 0, NULL, NULL);
}

static kiln_status cl_limits(kiln_backend_t be, char *buf, size_t n) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_device_info *d = &be->device;
    unsigned long budget = 0;
    kiln_status st = kiln_cl_loop_budget(cl, &budget);
    if (st) return st;
    char loops[160];
    if (cl->loop_limit)
        snprintf(loops, sizeof loops,
                 "capped by the driver at %lu iterations per work-item (self-check): long loops "
                 "run in parts of at most %lu",
                 cl->loop_limit, budget);
    else
        snprintf(loops, sizeof loops, "no cap (self-check)");
    char gemm[160];
    if ((st = kiln_cl_gemm_describe(be, gemm, sizeof gemm))) return st;
    snprintf(buf, n,
             "local memory %llu bytes; work-group %zu (per dimension %zux%zux%zu), clamped per "
             "kernel; fp64 %s (not used); %s kernel forms\n"
             "loops: %s\n"
             "gemm: %s",
             d->local_mem, d->max_work_group, d->max_work_item[0], d->max_work_item[1],
             d->max_work_item[2], d->fp64 ? "yes" : "no", cl->cpu_kernels ? "CPU" : "GPU", loops,
             gemm);
    return KILN_OK;
}

static const struct kiln_backend_iface cl_iface = {
    .limits = cl_limits,
    .map = cl_map,
    .unmap = cl_unmap,
    .stats = cl_stats,
    .buffer_alloc = cl_alloc,
    .buffer_free = cl_free_buffer,
    .buffer_host_ptr = NULL,
    .write = cl_write,
    .read = cl_read,
    .copy = cl_copy,
    .synchronize = cl_sync,
    .event_wait = cl_event_wait,
    .event_free = cl_event_free,
    .free = cl_free,
};

const kiln_op_fn kiln_cl_ops[KILN_OP_COUNT] = {
#define X(e, family, name, wmask) [KILN_OP_##e] = kiln_cl_##name,
#include "kiln/ops.def"
#undef X
};

const kiln_op_variant kiln_cl_variants[] = {
    {KILN_OP_CONV2D, kiln_cl_conv2d_winograd, kiln_cl_supports_conv2d_winograd, "opencl-winograd"},
    {KILN_OP_CONV2D_BWD_DATA, kiln_cl_conv2d_bwd_data_winograd,
     kiln_cl_supports_conv2d_bwd_data_winograd, "opencl-winograd"},
    {KILN_OP_CONV2D, kiln_cl_conv2d_winograd4, kiln_cl_supports_conv2d_winograd,
     "opencl-winograd4"},
    {KILN_OP_CONV2D_BWD_DATA, kiln_cl_conv2d_bwd_data_winograd4,
     kiln_cl_supports_conv2d_bwd_data_winograd, "opencl-winograd4"},
    {KILN_OP_CONV2D_BWD_FILTER, kiln_cl_conv2d_bwd_filter_winograd,
     kiln_cl_supports_conv2d_bwd_filter_winograd, "opencl-winograd"},
    {KILN_OP_CONV2D, kiln_cl_conv2d_edge, kiln_cl_supports_conv2d_edge, "opencl-edge"},
    {KILN_OP_CONV2D_BWD_DATA, kiln_cl_conv2d_bwd_data_edge, kiln_cl_supports_conv2d_bwd_data_edge,
     "opencl-edge"},
    {KILN_OP_CONV2D_BWD_FILTER, kiln_cl_conv2d_bwd_filter_edge,
     kiln_cl_supports_conv2d_bwd_filter_edge, "opencl-edge"},
    {KILN_OP_CONV2D, kiln_cl_conv2d_gemm, kiln_cl_supports_conv2d_gemm, "opencl-gemm"},
    {KILN_OP_CONV2D_BWD_DATA, kiln_cl_conv2d_bwd_data_gemm, kiln_cl_supports_conv2d_bwd_data_gemm,
     "opencl-gemm"},
    {KILN_OP_NONE, NULL, NULL, NULL},
};

kiln_status kiln_cl_backend_setup(kiln_backend_t be, const kiln_device_info *dev) {
    kiln_cl_ctx *cl = calloc(1, sizeof *cl);
    if (!cl) return kiln_error(KILN_OUT_OF_MEMORY, "opencl backend: out of host memory");
    be->iface = &cl_iface;
    be->ctx = cl;
    be->device = *dev;
    kiln_status st = kiln_cl_find_device(dev->index, &cl->platform, &cl->device);
    if (st) {
        cl_free(be);
        return st;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)cl->platform, 0};
    cl->context = clCreateContext(props, 1, &cl->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        st = kiln_cl_fail(err, "creating a context on %s", dev->name);
        cl_free(be);
        return st;
    }
    cl->oclgrind = strstr(dev->platform, "Oclgrind") != NULL;
    /* PoCL keeps compiled kernels in its own cache (POCL_CACHE_DIR) unless POCL_KERNEL_CACHE=0
       turns it off; asking it for a program's binary makes it compile every kernel of the
       program once more, for any work-group size. `kiln tune --model vgg16-narrow` on 2 cores
       with both caches empty: 76 -> 51 s (156 -> 76 builds); warm, PoCL's cache alone costs
       0.5 s more than loading kiln's binaries. kiln's own cache then stores no programs. */
    const char *pkc = getenv("POCL_KERNEL_CACHE");
    cl->own_cache =
        strstr(dev->platform, "Portable Computing Language") != NULL && !(pkc && !strcmp(pkc, "0"));
    snprintf(cl->device_name, sizeof cl->device_name, "%s", dev->name);
    /* Ops with a CPU form and a GPU form (convolutions, reductions) pick by device type;
       KILN_KERNELS=cpu|gpu forces one (tests run both forms on every device). */
    const char *kv = getenv("KILN_KERNELS");
    /* The CPU forms rely on a runtime that vectorises a work-item's explicit vectors (PoCL,
       whose preferred float vector is its SIMD width); a CPU device that vectorises across
       work-items instead, as a GPU does (llvmpipe reports 1), takes the GPU forms. */
    cl->cpu_kernels = dev->type == KILN_DEVICE_CPU && dev->pref_vec_float > 1;
    cl->fma = dev->fma;
    if (kv && *kv) {
        if (strcmp(kv, "cpu") && strcmp(kv, "gpu")) {
            cl_free(be);
            return kiln_error(KILN_INVALID_ARGUMENT, "KILN_KERNELS='%s' is not valid (cpu, gpu)",
                              kv);
        }
        cl->cpu_kernels = !strcmp(kv, "cpu");
    }
    cl_bool unified = CL_FALSE;
    clGetDeviceInfo(cl->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    cl->host_shared = unified && dev->type == KILN_DEVICE_CPU && !cl->oclgrind;
    cl->profiling = kiln_profile_enabled();
    cl->queue = clCreateCommandQueue(cl->context, cl->device,
                                     cl->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (err != CL_SUCCESS) {
        st = kiln_cl_fail(err, "creating a queue on %s", dev->name);
        cl_free(be);
        return st;
    }
    return KILN_OK;
}
