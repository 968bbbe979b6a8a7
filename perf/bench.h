/* Internal: the benchmarks behind `kiln bench`. Each returns the process exit code. */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

int kiln_bench_gemm(int argc, char **argv, const char *self);
/* Hidden: time to the first GEMM result in this process (run by bench gemm twice). */
int kiln_bench_cache_probe(void);
int kiln_bench_conv(int argc, char **argv, const char *self);
int kiln_bench_peak_cmd(int argc, char **argv);

#include "kiln/backend.h"
/* Measured peak fp32 GFLOP/s of an OpenCL backend's device (kernels/peak.cl). */
kiln_status kiln_bench_peak(kiln_backend_t be, double *gflops);

#endif
