/* The device's measured peak single-precision FLOP/s (kernels/peak.cl), so every benchmark
   figure can also be read as a fraction of what the device does at best. */
#include <stdio.h>

#include "cl-impl.h"

static double now_ms(void) {
    return 1e3 * kiln_time_s();
}

kiln_status kiln_backend_peak_gflops(kiln_backend_t be, double *gflops) {
    *gflops = 0;
    if (be->device.type == KILN_DEVICE_HOST)
        return kiln_error(KILN_UNSUPPORTED, "peak probe: needs an OpenCL backend");
    kiln_cl_ctx *cl = kiln_cl(be);
    unsigned vec = be->device.pref_vec_float;
    vec = vec >= 16 ? 16 : vec >= 8 ? 8 : vec >= 4 ? 4 : vec >= 2 ? 2 : 1;
    char opts[64];
    snprintf(opts, sizeof opts, "-DPEAK_VEC=%u -DPEAK_ITERS=1024", vec);
    cl_kernel k;
    kiln_status st = kiln_cl_get_kernel(cl, "peak.cl", "kiln_peak_fma", opts, &k);
    if (st) return st;
    /* Enough work-items to fill every compute unit many times over; grown until a run lasts
       long enough to time. */
    size_t global = (size_t)(be->device.compute_units ? be->device.compute_units : 1) *
                    (be->device.type == KILN_DEVICE_CPU ? 64 : 2048);
    cl_mem m = NULL;
    double best = 0;
    for (int attempt = 0; attempt < 12; attempt++) {
        if (m) clReleaseMemObject(m);
        m = NULL;
        if ((st = kiln_cl_workspace(cl, global * sizeof(float), &m))) return st;
        float a = 0.999f, b = 0.001f;
        if ((st = kiln_cl_args(k, "kiln_peak_fma", 3, sizeof m, &m, sizeof a, &a, sizeof b, &b)))
            break;
        double ms = 0;
        for (int r = 0; r < 4; r++) { /* first run warms up */
            double t0 = now_ms();
            if ((st = kiln_cl_launch(cl, k, "kiln_peak_fma", 1, &global, NULL)) ||
                (st = be->iface->synchronize(be)))
                break;
            ms = now_ms() - t0;
            double g = (double)global * 1024 * 8 * vec * 2 / (ms * 1e6);
            if (r && g > best) best = g;
        }
        if (st || ms > 50) break;
        global *= 2;
    }
    if (m) clReleaseMemObject(m);
    *gflops = best;
    return st;
}
