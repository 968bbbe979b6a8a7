/* Internal: per-op validation (runtime/ops-<family>.c) and helpers shared by validators and
   the convenience entry points. Validation runs once in kiln_compute before any backend sees
   the op, so implementations may rely on it. */
#ifndef KILN_OPS_IMPL_H
#define KILN_OPS_IMPL_H

#include "backend-impl.h"
#include "kiln/ops.h"

typedef kiln_status (*kiln_validate_fn)(kiln_backend_t be, const kiln_tensor *dst);

kiln_status kiln_validate_gemm(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_conv2d(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_conv2d_bwd_data(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_conv2d_bwd_filter(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_bias_grad(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_pool2d(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_pool2d_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_lrn(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_lrn_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_copy(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_concat(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_add(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_mul(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_bias_add(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_axpby(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_act(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_act_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_dropout(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_dropout_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_u8_to_f32(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_sum_squares(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_sgd_update(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_adam_update(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_batchnorm_stats(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_batchnorm(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_batchnorm_bwd_params(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_batchnorm_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_softmax_xent(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_softmax_xent_bwd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_validate_accuracy(kiln_backend_t be, const kiln_tensor *dst);

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
