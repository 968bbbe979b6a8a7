/* Tensors: dtype, shape, byte strides and (buffer, offset) storage. */
#ifndef KILN_TENSOR_H
#define KILN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_DIMS      4
#define KILN_MAX_SRC       6
#define KILN_MAX_OP_PARAMS 64 /* bytes */

typedef enum { KILN_F32, KILN_F16, KILN_U8, KILN_I32, KILN_DTYPE_COUNT } kiln_dtype;

typedef enum {
#define X(e, family, name, wmask) KILN_OP_##e,
    KILN_OP_NONE,
#include "kiln/ops.def"
#undef X
    KILN_OP_COUNT
} kiln_op;

typedef struct kiln_backend *kiln_backend_t;
typedef struct kiln_buffer *kiln_buffer_t;
typedef struct kiln_event *kiln_event_t;

/* Row-major: shape[0] is the outermost dimension (N of NCHW). Strides are in bytes.
   Views share their source's buffer and point at it through view_src. */
typedef struct kiln_tensor {
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t stride[KILN_MAX_DIMS];
    kiln_buffer_t buffer;
    size_t offset; /* bytes into buffer */
    kiln_op op;    /* KILN_OP_NONE for data */
    uint8_t op_params[KILN_MAX_OP_PARAMS];
    struct kiln_tensor *src[KILN_MAX_SRC];
    struct kiln_tensor *view_src;
    struct kiln_tensor *grad;
    char name[32];
} kiln_tensor;

size_t kiln_dtype_size(kiln_dtype t);
const char *kiln_dtype_name(kiln_dtype t);
const char *kiln_op_name(kiln_op op);
/* Family used by per-op overrides ("gemm", "conv", ...). */
const char *kiln_op_family(kiln_op op);
/* Bit i set: the op also updates src[i] in place (optimizer state). */
unsigned kiln_op_written_srcs(kiln_op op);

/* Describes a contiguous tensor with no storage yet. */
kiln_status kiln_tensor_init(kiln_tensor *t, kiln_dtype dtype, int ndim, const int64_t *shape);
int64_t kiln_tensor_nelements(const kiln_tensor *t);
/* Bytes spanned from the first to one past the last element (0 for empty tensors). */
size_t kiln_tensor_extent(const kiln_tensor *t);
int kiln_tensor_is_contiguous(const kiln_tensor *t);
/* Attaches storage; fails when the tensor does not fit in the buffer. */
kiln_status kiln_tensor_bind(kiln_tensor *t, kiln_buffer_t buf, size_t offset);
/* A view of src with a new shape/strides (bytes) at src offset + byte_offset. */
kiln_status kiln_tensor_view(kiln_tensor *view, kiln_tensor *src, int ndim, const int64_t *shape,
                             const int64_t *stride, size_t byte_offset);
/* Convenience: describe and allocate a contiguous tensor with its own buffer. Free with
   kiln_tensor_release (which frees the buffer). */
kiln_status kiln_tensor_alloc(kiln_tensor *t, kiln_backend_t be, kiln_dtype dtype, int ndim,
                              const int64_t *shape);
void kiln_tensor_release(kiln_tensor *t);
/* Human readable "f32[2,3,4]". */
void kiln_tensor_describe(const kiln_tensor *t, char *out, size_t n);

/* Host <-> storage copies of a contiguous tensor. The async forms return an event
   (NULL when the copy already completed) that must be waited on before `data` is reused. */
kiln_status kiln_tensor_set(kiln_tensor *t, const void *data, size_t bytes);
kiln_status kiln_tensor_get(const kiln_tensor *t, void *data, size_t bytes);
kiln_status kiln_tensor_set_async(kiln_tensor *t, const void *data, size_t bytes, kiln_event_t *ev);
kiln_status kiln_tensor_get_async(const kiln_tensor *t, void *data, size_t bytes, kiln_event_t *ev);
/* Copies between contiguous tensors of equal size, across backends too. */
kiln_status kiln_tensor_copy(kiln_tensor *dst, const kiln_tensor *src);

kiln_status kiln_event_wait(kiln_event_t ev);
void kiln_event_free(kiln_event_t ev);

#ifdef __cplusplus
}
#endif
#endif
