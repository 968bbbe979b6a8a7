/* Internal: per-op validation (runtime/ops-<family>.c) and helpers shared by validators and
   the convenience entry points. Validation runs once in kiln_compute before any backend sees
   the op, so implementations may rely on it. */
#ifndef KILN_OPS_IMPL_H
#define KILN_OPS_IMPL_H

#include "backend-impl.h"
#include "kiln/ops.h"

typedef kiln_status (*kiln_validate_fn)(kiln_backend_t be, const kiln_tensor *dst);

/* The validators, kiln_validate_<name> for every op in ops.def. */
#define X(e, family, name, wmask)                                                                  \
    kiln_status kiln_validate_##name(kiln_backend_t be, const kiln_tensor *dst);
#include "kiln/ops.def"
#undef X
/* The validator of an op, NULL for KILN_OP_NONE and out-of-range values. */
kiln_validate_fn kiln_op_validator(kiln_op op);

/* t exists, has storage, and that storage belongs to be. */
kiln_status kiln_check_storage(kiln_backend_t be, const kiln_tensor *t, const char *op,
                               const char *role);
/* kiln_check_storage plus dtype, contiguity and (when ndim > 0) the number of dims. */
kiln_status kiln_check_tensor(kiln_backend_t be, const kiln_tensor *t, const char *op,
                              const char *role, kiln_dtype dtype, int ndim);
/* Same shape, or an error naming both. */
kiln_status kiln_check_same_shape(const kiln_tensor *a, const kiln_tensor *b, const char *op,
                                  const char *ra, const char *rb);
/* An error "op: role is f32[2,3], expected <what>". */
kiln_status kiln_shape_error(const kiln_tensor *t, const char *op, const char *role,
                             const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* CONCAT: the part of dst that source i fills; *at is the running position along the axis
   (start at 0, call for i = 0, 1, ...). */
void kiln_concat_part(const kiln_tensor *dst, int i, int64_t *at, kiln_tensor *part);

/* Builds the node over dst (a copy of dst with op, params and sources) and computes it. */
kiln_status kiln_run_op(kiln_backend_t be, kiln_op op, const void *params, size_t params_size,
                        kiln_tensor *dst, int nsrc, kiln_tensor *const *src);

#endif
