/* Internal: cpu backend op implementations, one file per op family. */
#ifndef KILN_CPU_OPS_H
#define KILN_CPU_OPS_H

#include "../../ops-impl.h"

kiln_status kiln_cpu_gemm(kiln_backend_t be, kiln_tensor *dst);
/* conv */
kiln_status kiln_cpu_conv2d(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_conv2d_bwd_data(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_conv2d_bwd_filter(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_bias_grad(kiln_backend_t be, kiln_tensor *dst);
/* pool */
kiln_status kiln_cpu_pool2d(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_pool2d_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_lrn(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_lrn_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_copy(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_concat(kiln_backend_t be, kiln_tensor *dst);
/* eltwise */
kiln_status kiln_cpu_add(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_mul(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_bias_add(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_axpby(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_act(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_act_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_dropout(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_dropout_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_u8_to_f32(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_sum_squares(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_sgd_update(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_adam_update(kiln_backend_t be, kiln_tensor *dst);
/* norm */
kiln_status kiln_cpu_batchnorm_stats(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_batchnorm(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_batchnorm_bwd_params(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_batchnorm_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_softmax_xent(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_softmax_xent_bwd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cpu_accuracy(kiln_backend_t be, kiln_tensor *dst);

#endif
