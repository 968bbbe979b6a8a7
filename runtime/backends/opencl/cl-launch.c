/* Kernel arguments and launches with work-group sizes that adapt to the device. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl-impl.h"

kiln_status kiln_cl_args(cl_kernel k, const char *name, int n, ...) {
    va_list ap;
    va_start(ap, n);
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && !st; i++) {
        size_t size = va_arg(ap, size_t);
        const void *value = va_arg(ap, const void *);
        cl_int err = clSetKernelArg(k, (cl_uint)i, size, value);
        if (err != CL_SUCCESS) st = kiln_cl_fail(err, "kernel %s: argument %d", name, i);
    }
    va_end(ap);
    return st;
}

static int sync_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *v = getenv("KILN_SYNC");
        mode = v && *v && strcmp(v, "0") != 0;
    }
    return mode;
}

/* KILN_PROFILE: waits for the kernel and reports its execution time. */
static void profile(cl_event ev, const char *name) {
    cl_ulong t0 = 0, t1 = 0;
    if (clWaitForEvents(1, &ev) == CL_SUCCESS &&
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) ==
            CL_SUCCESS &&
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS)
        kiln_profile_kernel(name, (double)(t1 - t0) * 1e-9);
    clReleaseEvent(ev);
}

kiln_status kiln_cl_launch(kiln_cl_ctx *cl, cl_kernel k, const char *name, cl_uint dims,
                           const size_t *global, const size_t *local) {
    size_t loc[3] = {1, 1, 1}, glob[3] = {1, 1, 1};
    for (cl_uint d = 0; d < dims; d++) {
        if (global[d] == 0) return KILN_OK; /* nothing to do */
        glob[d] = global[d];
        if (local) loc[d] = local[d] ? local[d] : 1;
    }
    if (local) {
        /* Clamp to what the device and this kernel accept before asking. */
        size_t dev_max = 0, kern_max = 0, item_max[3] = {0, 0, 0};
        clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof dev_max, &dev_max, NULL);
        clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof item_max, item_max, NULL);
        clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kern_max,
                                 &kern_max, NULL);
        size_t limit = dev_max && kern_max ? (dev_max < kern_max ? dev_max : kern_max)
                                           : (dev_max ? dev_max : kern_max);
        for (cl_uint d = 0; d < dims; d++)
            while (item_max[d] && loc[d] > item_max[d] && loc[d] > 1) loc[d] /= 2;
        for (;;) {
            size_t total = 1;
            for (cl_uint d = 0; d < dims; d++) total *= loc[d];
            if (!limit || total <= limit) break;
            cl_uint biggest = 0;
            for (cl_uint d = 1; d < dims; d++)
                if (loc[d] > loc[biggest]) biggest = d;
            loc[biggest] /= 2;
        }
    }
    for (;;) {
        for (cl_uint d = 0; d < dims; d++)
            glob[d] = local ? (global[d] + loc[d] - 1) / loc[d] * loc[d] : global[d];
        cl_event ev = NULL;
        cl_int err = clEnqueueNDRangeKernel(cl->queue, k, dims, NULL, glob, local ? loc : NULL, 0,
                                            NULL, cl->profiling ? &ev : NULL);
        if (err == CL_SUCCESS) {
            if (ev) profile(ev, name);
            break;
        }
        int shrinkable = 0;
        for (cl_uint d = 0; local && d < dims; d++) shrinkable |= loc[d] > 1;
        if ((err == CL_INVALID_WORK_GROUP_SIZE || err == CL_OUT_OF_RESOURCES ||
             err == CL_INVALID_WORK_ITEM_SIZE) &&
            shrinkable) {
            cl_uint biggest = 0;
            for (cl_uint d = 1; d < dims; d++)
                if (loc[d] > loc[biggest]) biggest = d;
            loc[biggest] /= 2;
            kiln_log(KILN_LOG_DEBUG, "kernel %s: %s, retrying with a smaller work-group", name,
                     kiln_cl_error_name(err));
            continue;
        }
        return kiln_cl_fail(err, "launching kernel %s", name);
    }
    if (sync_mode()) {
        cl_int err = clFinish(cl->queue);
        if (err != CL_SUCCESS) return kiln_cl_fail(err, "kernel %s failed (KILN_SYNC=1)", name);
    }
    return KILN_OK;
}
