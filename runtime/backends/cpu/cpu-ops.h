/* Internal: cpu backend op implementations, one file per op family. */
#ifndef KILN_CPU_OPS_H
#define KILN_CPU_OPS_H

#include "../../backend-impl.h"

kiln_status kiln_cpu_gemm(kiln_backend_t be, kiln_tensor *dst);

#endif
