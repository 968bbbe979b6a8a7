/* Device buffers of the opencl backend: every allocation, and the scratch that one op at a
   time may use (the GEMM's packing, the tiled convolutions' staging). */
#include "cl-impl.h"

kiln_status kiln_cl_workspace(kiln_cl_ctx *cl, size_t bytes, cl_mem *out) {
    cl_int err;
    *out = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "allocating %zu bytes", bytes);
    if (!cl->oclgrind) return KILN_OK;
    /* Oclgrind's uninitialized-value checker creates a buffer's state on host writes and maps
       only, so a buffer that only kernels write, created where a released one was, inherits
       stale state and reads as uninitialized however fully kernels wrote it. Mapping it for
       writing resets that state and copies nothing; elsewhere a map could cost a transfer. */
    void *p = clEnqueueMapBuffer(cl->queue, *out, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                 bytes ? bytes : 1, 0, NULL, NULL, &err);
    if (err == CL_SUCCESS) err = clEnqueueUnmapMemObject(cl->queue, *out, p, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(*out);
        *out = NULL;
        return kiln_cl_fail(err, "preparing %zu bytes", bytes);
    }
    return KILN_OK;
}

kiln_status kiln_cl_get_scratch(kiln_cl_ctx *cl, size_t bytes, cl_mem *out) {
    if (cl->scratch && cl->scratch_size >= bytes) {
        *out = cl->scratch;
        return KILN_OK;
    }
    /* Growth is rare (geometric), so waiting for queued users of the old buffer before
       releasing it costs little and does not lean on deferred deletion, which not every
       implementation (Oclgrind among them) gets right. */
    if (cl->scratch) {
        clFinish(cl->queue);
        clReleaseMemObject(cl->scratch);
        bytes = bytes > cl->scratch_size + cl->scratch_size / 2
                    ? bytes
                    : cl->scratch_size + cl->scratch_size / 2;
    }
    /* Start at 4 MiB so small GEMMs never regrow it. */
    if (bytes < ((size_t)4 << 20)) bytes = (size_t)4 << 20;
    cl->scratch = NULL;
    cl->scratch_size = 0;
    cl_mem m;
    kiln_status st = kiln_cl_workspace(cl, bytes, &m);
    if (st) return st;
    cl->scratch = m;
    cl->scratch_size = bytes;
    *out = m;
    return KILN_OK;
}
