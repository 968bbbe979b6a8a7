/* Tensor descriptions without storage: dtype and op names, shapes, strides, extents. These
   ask nothing of a backend, so every backend may use them. */
#include <stdio.h>
#include <string.h>

#include "backend-impl.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[KILN_DTYPE_COUNT] = {
    [KILN_F32] = {"f32", 4},
    [KILN_F16] = {"f16", 2},
    [KILN_U8] = {"u8", 1},
    [KILN_I32] = {"i32", 4},
};

static const char *const op_names[KILN_OP_COUNT] = {
    [KILN_OP_NONE] = "none",
#define X(e, family, name, wmask) [KILN_OP_##e] = #name,
#include "kiln/ops.def"
#undef X
};

static const char *const op_families[KILN_OP_COUNT] = {
    [KILN_OP_NONE] = "none",
#define X(e, family, name, wmask) [KILN_OP_##e] = family,
#include "kiln/ops.def"
#undef X
};

size_t kiln_dtype_size(kiln_dtype t) {
    return (unsigned)t < KILN_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *kiln_dtype_name(kiln_dtype t) {
    return (unsigned)t < KILN_DTYPE_COUNT ? dtypes[t].name : "?";
}

const char *kiln_op_name(kiln_op op) {
    return (unsigned)op < KILN_OP_COUNT ? op_names[op] : "?";
}

const char *kiln_op_family(kiln_op op) {
    return (unsigned)op < KILN_OP_COUNT ? op_families[op] : "?";
}

kiln_status kiln_tensor_init(kiln_tensor *t, kiln_dtype dtype, int ndim, const int64_t *shape) {
    if ((unsigned)dtype >= KILN_DTYPE_COUNT)
        return kiln_error(KILN_INVALID_ARGUMENT, "tensor: unknown dtype %d", (int)dtype);
    if (ndim < 1 || ndim > KILN_MAX_DIMS)
        return kiln_error(KILN_INVALID_ARGUMENT, "tensor: ndim %d outside 1..%d", ndim,
                          KILN_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = (int64_t)kiln_dtype_size(dtype);
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] < 0)
            return kiln_error(KILN_INVALID_ARGUMENT, "tensor: negative dimension %d: %lld", i,
                              (long long)shape[i]);
        t->shape[i] = shape[i];
        t->stride[i] = stride;
        /* Overflow guard: refuse shapes whose byte size does not fit in 62 bits. */
        if (shape[i] && stride > (INT64_C(1) << 62) / shape[i])
            return kiln_error(KILN_INVALID_ARGUMENT, "tensor: shape too large");
        stride *= shape[i] ? shape[i] : 1;
    }
    return KILN_OK;
}

int64_t kiln_tensor_nelements(const kiln_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kiln_tensor_extent(const kiln_tensor *t) {
    if (kiln_tensor_nelements(t) == 0) return 0;
    int64_t last = 0;
    for (int i = 0; i < t->ndim; i++) last += (t->shape[i] - 1) * t->stride[i];
    return (size_t)last + kiln_dtype_size(t->dtype);
}

int kiln_tensor_is_contiguous(const kiln_tensor *t) {
    int64_t stride = (int64_t)kiln_dtype_size(t->dtype);
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != stride) return 0;
        stride *= t->shape[i];
    }
    return 1;
}

void kiln_tensor_describe(const kiln_tensor *t, char *out, size_t n) {
    int len = snprintf(out, n, "%s[", kiln_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && len > 0 && (size_t)len < n; i++)
        len += snprintf(out + len, n - (size_t)len, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (len > 0 && (size_t)len < n) snprintf(out + len, n - (size_t)len, "]");
}

void *kiln_tensor_host_data(const kiln_tensor *t) {
    if (!t->buffer || !t->buffer->be->iface->buffer_host_ptr) return NULL;
    char *base = t->buffer->be->iface->buffer_host_ptr(t->buffer->be, t->buffer->handle);
    return base ? base + t->offset : NULL;
}
