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
    [KILN_OP_GEMM] = kiln_cpu_gemm,
    [KILN_OP_CONV2D] = kiln_cpu_conv2d,
    [KILN_OP_CONV2D_BWD_DATA] = kiln_cpu_conv2d_bwd_data,
    [KILN_OP_CONV2D_BWD_FILTER] = kiln_cpu_conv2d_bwd_filter,
    [KILN_OP_BIAS_GRAD] = kiln_cpu_bias_grad,
    [KILN_OP_POOL2D] = kiln_cpu_pool2d,
    [KILN_OP_POOL2D_BWD] = kiln_cpu_pool2d_bwd,
    [KILN_OP_LRN] = kiln_cpu_lrn,
    [KILN_OP_LRN_BWD] = kiln_cpu_lrn_bwd,
    [KILN_OP_COPY] = kiln_cpu_copy,
    [KILN_OP_CONCAT] = kiln_cpu_concat,
    [KILN_OP_ADD] = kiln_cpu_add,
    [KILN_OP_MUL] = kiln_cpu_mul,
    [KILN_OP_BIAS_ADD] = kiln_cpu_bias_add,
    [KILN_OP_AXPBY] = kiln_cpu_axpby,
    [KILN_OP_ACT] = kiln_cpu_act,
    [KILN_OP_ACT_BWD] = kiln_cpu_act_bwd,
    [KILN_OP_DROPOUT] = kiln_cpu_dropout,
    [KILN_OP_DROPOUT_BWD] = kiln_cpu_dropout_bwd,
    [KILN_OP_U8_TO_F32] = kiln_cpu_u8_to_f32,
    [KILN_OP_SUM_SQUARES] = kiln_cpu_sum_squares,
    [KILN_OP_SGD_UPDATE] = kiln_cpu_sgd_update,
    [KILN_OP_ADAM_UPDATE] = kiln_cpu_adam_update,
    [KILN_OP_BATCHNORM_STATS] = kiln_cpu_batchnorm_stats,
    [KILN_OP_BATCHNORM] = kiln_cpu_batchnorm,
    [KILN_OP_BATCHNORM_BWD_PARAMS] = kiln_cpu_batchnorm_bwd_params,
    [KILN_OP_BATCHNORM_BWD] = kiln_cpu_batchnorm_bwd,
    [KILN_OP_SOFTMAX_XENT] = kiln_cpu_softmax_xent,
    [KILN_OP_SOFTMAX_XENT_BWD] = kiln_cpu_softmax_xent_bwd,
    [KILN_OP_ACCURACY] = kiln_cpu_accuracy,
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
