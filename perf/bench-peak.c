/* `kiln bench peak`: the device's measured peak single-precision FLOP/s (the library's
   kiln_backend_peak_gflops), so every benchmark figure can also be read as a fraction of what
   the device does at best. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "kiln/kiln.h"

kiln_status kiln_bench_peak(kiln_backend_t be, double *gflops) {
    return kiln_backend_peak_gflops(be, gflops);
}

int kiln_bench_peak_cmd(int argc, char **argv) {
    if (argc > 1) {
        fprintf(stderr, "usage: kiln bench peak   (the OpenCL device is KILN_DEVICE's choice)\n");
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
    }
    kiln_backend_t be;
    if (kiln_backend_init("opencl", NULL, &be)) {
        fprintf(stderr, "kiln bench peak: %s\n", kiln_last_error());
        return 1;
    }
    double g;
    kiln_status st = kiln_bench_peak(be, &g);
    if (st)
        fprintf(stderr, "kiln bench peak: %s\n", kiln_last_error());
    else
        printf("%s: measured peak %.1f GFLOP/s (fp32 multiply-add chains)\n",
               kiln_backend_device(be)->name, g);
    kiln_backend_free(be);
    return st ? 1 : 0;
}
