/* The plain-C reference backend: host memory, synchronous, the oracle for every test. */
#include <stdlib.h>
#include <string.h>

#include "../../backend-impl.h"
#include "cpu-ops.h"

static kiln_status cpu_alloc(kiln_backend_t be, size_t bytes, void **handle) {
    (void)be;
    /* 64-byte alignment keeps vector loads aligned for every dtype. */
    size_t rounded = (bytes + 63) / 64 * 64;
    *handle = aligned_alloc(64, rounded ? rounded : 64);
    if (!*handle)
        return kiln_error(KILN_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes", bytes);
    return KILN_OK;
}

static void cpu_free_buffer(kiln_backend_t be, void *handle) {
    (void)be;
    free(handle);
}

static void *cpu_host_ptr(kiln_backend_t be, void *handle) {
    (void)be;
    return handle;
}

static kiln_status cpu_write(kiln_backend_t be, void *handle, size_t off, const void *src, size_t n,
                             kiln_event_t *ev) {
    (void)be;
    memcpy((char *)handle + off, src, n);
    if (ev) *ev = NULL;
    return KILN_OK;
}

static kiln_status cpu_read(kiln_backend_t be, void *handle, size_t off, void *dst, size_t n,
                            kiln_event_t *ev) {
    (void)be;
    memcpy(dst, (const char *)handle + off, n);
    if (ev) *ev = NULL;
    return KILN_OK;
}

static kiln_status cpu_copy(kiln_backend_t be, void *dst, size_t dst_off, void *src, size_t src_off,
                            size_t n) {
    (void)be;
    memmove((char *)dst + dst_off, (const char *)src + src_off, n);
    return KILN_OK;
}

static kiln_status cpu_sync(kiln_backend_t be) {
    (void)be;
    return KILN_OK;
}

static const struct kiln_backend_iface cpu_iface = {
    .buffer_alloc = cpu_alloc,
    .buffer_free = cpu_free_buffer,
    .buffer_host_ptr = cpu_host_ptr,
    .write = cpu_write,
    .read = cpu_read,
    .copy = cpu_copy,
    .synchronize = cpu_sync,
};

const kiln_op_fn kiln_cpu_ops[KILN_OP_COUNT] = {
#define X(e, family, name, wmask) [KILN_OP_##e] = kiln_cpu_##name,
#include "kiln/ops.def"
#undef X
};

kiln_status kiln_cpu_backend_setup(kiln_backend_t be) {
    be->iface = &cpu_iface;
    be->ctx = NULL;
    memset(&be->device, 0, sizeof be->device);
    be->device.index = -1;
    be->device.platform_index = -1;
    be->device.type = KILN_DEVICE_HOST;
    strcpy(be->device.name, "host");
    strcpy(be->device.platform, "kiln cpu backend");
    return KILN_OK;
}
