/* Minimal reproducer of a driver that silently leaves long loops: one work-item adds up n
 * ones in a loop with a run-time trip count and the program prints the sum, which must be n.
 *
 *   cc -o loop-cap tests/drivers/loop-cap.c -lOpenCL
 *   RUSTICL_ENABLE=llvmpipe ./loop-cap rusticl 65535 65536 100000
 *
 * On Mesa 22.3's rusticl (llvmpipe, LLVM 15) every n above 65535 prints 65535: gallivm's loop
 * limiter ends a work-item's loops after 65535 iterations in all (nested loops share the count)
 * with no error. PoCL and Oclgrind print n. kiln measures the cap the same way at run time
 * (kernels/probe.cl, cl-quirks.c). Arguments: a substring of the platform name, then counts. */
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *src =
    "__kernel void count(__global const float *x, uint n, __global float *out) {\n"
    "    float s = 0.0f;\n"
    "    for (uint i = 0; i < n; i++) s += x[i];\n"
    "    out[get_global_id(0)] = s;\n"
    "}\n";

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PLATFORM-SUBSTRING N...\n", argv[0]);
        return 2;
    }
    cl_platform_id pl[8];
    cl_uint np = 0;
    cl_device_id dev = NULL;
    if (clGetPlatformIDs(8, pl, &np) != CL_SUCCESS) np = 0;
    for (cl_uint i = 0; i < np && !dev; i++) {
        char name[256] = "";
        clGetPlatformInfo(pl[i], CL_PLATFORM_NAME, sizeof name, name, NULL);
        if (strstr(name, argv[1]) && clGetDeviceIDs(pl[i], CL_DEVICE_TYPE_ALL, 1, &dev, NULL))
            dev = NULL;
    }
    if (!dev) {
        fprintf(stderr, "no platform matching '%s'\n", argv[1]);
        return 1;
    }
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &err);
    cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    if (clBuildProgram(p, 1, &dev, "", NULL, NULL) != CL_SUCCESS) {
        fprintf(stderr, "build failed\n");
        return 1;
    }
    cl_kernel k = clCreateKernel(p, "count", &err);
    int wrong = 0;
    for (int a = 2; a < argc; a++) {
        cl_uint n = (cl_uint)strtoul(argv[a], NULL, 10);
        float *ones = malloc(sizeof(float) * (n ? n : 1)), sum = -1.0f;
        if (!ones) return 1;
        for (cl_uint i = 0; i < n; i++) ones[i] = 1.0f;
        cl_mem x =
            clCreateBuffer(ctx, CL_MEM_COPY_HOST_PTR, sizeof(float) * (n ? n : 1), ones, &err);
        cl_mem out = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof(float), NULL, &err);
        clSetKernelArg(k, 0, sizeof x, &x);
        clSetKernelArg(k, 1, sizeof n, &n);
        clSetKernelArg(k, 2, sizeof out, &out);
        size_t one = 1;
        clEnqueueNDRangeKernel(q, k, 1, NULL, &one, &one, 0, NULL, NULL);
        clEnqueueReadBuffer(q, out, CL_TRUE, 0, sizeof sum, &sum, 0, NULL, NULL);
        printf("n=%u: sum %.0f%s\n", n, sum, sum == (float)n ? "" : "  WRONG");
        wrong |= sum != (float)n;
        clReleaseMemObject(x);
        clReleaseMemObject(out);
        free(ones);
    }
    return wrong;
}
