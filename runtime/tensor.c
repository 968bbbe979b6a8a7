#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-impl.h"

/* Tensors with storage: binding, views, allocation and transfers through the backend (names,
   shapes and extents are tensor-shape.c). */

kiln_status kiln_tensor_bind(kiln_tensor *t, kiln_buffer_t buf, size_t offset) {
    if (!buf) return kiln_error(KILN_INVALID_ARGUMENT, "tensor '%s': no buffer", t->name);
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] < 0)
            return kiln_error(KILN_INVALID_ARGUMENT, "tensor '%s': negative stride", t->name);
    size_t ext = kiln_tensor_extent(t);
    if (offset > buf->size || ext > buf->size - offset)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "tensor '%s': %zu bytes at offset %zu do not fit in a %zu-byte buffer",
                          t->name, ext, offset, buf->size);
    t->buffer = buf;
    t->offset = offset;
    return KILN_OK;
}

kiln_status kiln_tensor_view(kiln_tensor *view, kiln_tensor *src, int ndim, const int64_t *shape,
                             const int64_t *stride, size_t byte_offset) {
    kiln_tensor v;
    kiln_status st = kiln_tensor_init(&v, src->dtype, ndim, shape);
    if (st) return st;
    if (stride) memcpy(v.stride, stride, sizeof(int64_t) * (size_t)ndim);
    size_t nl = strnlen(src->name, sizeof v.name - 7);
    memcpy(v.name, src->name, nl);
    memcpy(v.name + nl, "(view)", 7);
    v.view_src = src;
    if (src->buffer) {
        st = kiln_tensor_bind(&v, src->buffer, src->offset + byte_offset);
        if (st) return st;
    }
    *view = v;
    return KILN_OK;
}

kiln_status kiln_tensor_alloc(kiln_tensor *t, kiln_backend_t be, kiln_dtype dtype, int ndim,
                              const int64_t *shape) {
    kiln_status st = kiln_tensor_init(t, dtype, ndim, shape);
    if (st) return st;
    size_t bytes = kiln_tensor_extent(t);
    kiln_buffer_t buf;
    st = kiln_buffer_alloc(be, bytes ? bytes : 1, &buf);
    if (st) return st;
    return kiln_tensor_bind(t, buf, 0);
}

void kiln_tensor_release(kiln_tensor *t) {
    if (t && t->buffer) {
        kiln_buffer_free(t->buffer);
        t->buffer = NULL;
    }
}

static kiln_status check_transfer(const kiln_tensor *t, size_t bytes, const char *what) {
    if (!t->buffer)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: tensor '%s' has no storage", what, t->name);
    if (!kiln_tensor_is_contiguous(t))
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: tensor '%s' is not contiguous", what,
                          t->name);
    size_t need = (size_t)kiln_tensor_nelements(t) * kiln_dtype_size(t->dtype);
    if (bytes != need)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: tensor '%s' holds %zu bytes, %zu given", what,
                          t->name, need, bytes);
    return KILN_OK;
}

kiln_status kiln_tensor_set_async(kiln_tensor *t, const void *data, size_t bytes,
                                  kiln_event_t *ev) {
    if (ev) *ev = NULL;
    kiln_status st = check_transfer(t, bytes, "tensor_set");
    if (st || !bytes) return st;
    kiln_backend_t be = t->buffer->be;
    return be->iface->write(be, t->buffer->handle, t->offset, data, bytes, ev);
}

kiln_status kiln_tensor_get_async(const kiln_tensor *t, void *data, size_t bytes,
                                  kiln_event_t *ev) {
    if (ev) *ev = NULL;
    kiln_status st = check_transfer(t, bytes, "tensor_get");
    if (st || !bytes) return st;
    kiln_backend_t be = t->buffer->be;
    return be->iface->read(be, t->buffer->handle, t->offset, data, bytes, ev);
}

kiln_status kiln_tensor_set(kiln_tensor *t, const void *data, size_t bytes) {
    return kiln_tensor_set_async(t, data, bytes, NULL);
}

kiln_status kiln_tensor_get(const kiln_tensor *t, void *data, size_t bytes) {
    return kiln_tensor_get_async(t, data, bytes, NULL);
}

kiln_status kiln_tensor_copy(kiln_tensor *dst, const kiln_tensor *src) {
    size_t bytes = (size_t)kiln_tensor_nelements(src) * kiln_dtype_size(src->dtype);
    kiln_status st = check_transfer(src, bytes, "tensor_copy(src)");
    if (!st) st = check_transfer(dst, bytes, "tensor_copy(dst)");
    if (st || !bytes) return st;
    kiln_backend_t db = dst->buffer->be, sb = src->buffer->be;
    if (db == sb)
        return db->iface->copy(db, dst->buffer->handle, dst->offset, src->buffer->handle,
                               src->offset, bytes);
    /* Across backends: through host memory (or straight from/to host storage). */
    void *src_host = kiln_tensor_host_data(src);
    if (src_host) return kiln_tensor_set(dst, src_host, bytes);
    void *dst_host = kiln_tensor_host_data(dst);
    if (dst_host) return kiln_tensor_get(src, dst_host, bytes);
    void *tmp = malloc(bytes);
    if (!tmp) return kiln_error(KILN_OUT_OF_MEMORY, "tensor_copy: %zu bytes of host memory", bytes);
    st = kiln_tensor_get(src, tmp, bytes);
    if (!st) st = kiln_tensor_set(dst, tmp, bytes);
    free(tmp);
    return st;
}

kiln_status kiln_event_wait(kiln_event_t ev) {
    if (!ev) return KILN_OK;
    return ev->be->iface->event_wait ? ev->be->iface->event_wait(ev->be, ev->handle) : KILN_OK;
}

void kiln_event_free(kiln_event_t ev) {
    if (!ev) return;
    if (ev->be->iface->event_free) ev->be->iface->event_free(ev->be, ev->handle);
    free(ev);
}
