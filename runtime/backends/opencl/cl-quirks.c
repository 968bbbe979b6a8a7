/* Driver properties that the device queries do not report, measured by self-checks
 * (kernels/probe.cl) the first time an op depends on them. */
#include <stdlib.h>
#include <string.h>

#include "cl-impl.h"

/* Iterations the probe asks for: past every cap seen (65535), cheap on any device. */
#define PROBE_ITERS (1u << 17)

static kiln_status probe_loop_limit(kiln_cl_ctx *cl, unsigned long *limit) {
    cl_kernel k;
    kiln_status st = kiln_cl_get_kernel(cl, "probe.cl", "kiln_loop_probe", "", &k);
    if (st) return st;
    cl_uint ones[16], n = PROBE_ITERS, count = 0;
    for (int i = 0; i < 16; i++) ones[i] = 1;
    cl_int err;
    cl_mem in = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof ones,
                               ones, &err);
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "kiln_loop_probe: input buffer");
    cl_mem out = clCreateBuffer(cl->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof count,
                                &count, &err);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(in);
        return kiln_cl_fail(err, "kiln_loop_probe: output buffer");
    }
    const size_t one = 1;
    st = kiln_cl_args(k, "kiln_loop_probe", 3, sizeof in, &in, sizeof n, &n, sizeof out, &out);
    if (!st) st = kiln_cl_launch(cl, k, "kiln_loop_probe", 1, &one, &one);
    if (!st) {
        err = clEnqueueReadBuffer(cl->queue, out, CL_TRUE, 0, sizeof count, &count, 0, NULL, NULL);
        if (err != CL_SUCCESS) st = kiln_cl_fail(err, "kiln_loop_probe: reading the count");
    }
    clReleaseMemObject(in);
    clReleaseMemObject(out);
    if (st) return st;
    *limit = count >= n ? 0 : count;
    if (*limit)
        kiln_log(KILN_LOG_INFO,
                 "%s: loops stop after %lu iterations per work-item (a driver limit); kiln "
                 "splits long loops to stay under it",
                 cl->device_name, *limit);
    return KILN_OK;
}

kiln_status kiln_cl_loop_budget(kiln_cl_ctx *cl, unsigned long *budget) {
    if (!cl->loop_probed) {
        unsigned long limit = 0;
        kiln_status st = probe_loop_limit(cl, &limit);
        if (st) {
            kiln_error_append(" (the loop-limit self-check on %s)", cl->device_name);
            return st;
        }
        /* KILN_LOOP_LIMIT=N imposes a cap of N (the smaller one wins), so that the split
           paths are tested against the cpu backend on any device. */
        const char *v = getenv("KILN_LOOP_LIMIT");
        if (v && *v) {
            char *end = NULL;
            unsigned long n = strtoul(v, &end, 10);
            if (*end || n < 64)
                return kiln_error(KILN_INVALID_ARGUMENT,
                                  "KILN_LOOP_LIMIT='%s' is not valid (an iteration count >= 64)",
                                  v);
            if (!limit || n < limit) limit = n;
        }
        cl->loop_limit = limit;
        cl->loop_probed = 1;
    }
    /* Half the cap: the host's iteration counts are estimates (a compiler may keep a loop
       the source marks for unrolling, or split a wide vector operation into one). */
    *budget = cl->loop_limit / 2;
    return KILN_OK;
}
