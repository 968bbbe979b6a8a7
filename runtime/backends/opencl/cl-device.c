/* OpenCL platform/device discovery and error names. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl-impl.h"

static const struct {
    cl_int code;
    const char *name;
} cl_errors[] = {
    {CL_SUCCESS, "CL_SUCCESS"},
    {CL_DEVICE_NOT_FOUND, "CL_DEVICE_NOT_FOUND"},
    {CL_DEVICE_NOT_AVAILABLE, "CL_DEVICE_NOT_AVAILABLE"},
    {CL_COMPILER_NOT_AVAILABLE, "CL_COMPILER_NOT_AVAILABLE"},
    {CL_MEM_OBJECT_ALLOCATION_FAILURE, "CL_MEM_OBJECT_ALLOCATION_FAILURE"},
    {CL_OUT_OF_RESOURCES, "CL_OUT_OF_RESOURCES"},
    {CL_OUT_OF_HOST_MEMORY, "CL_OUT_OF_HOST_MEMORY"},
    {CL_MEM_COPY_OVERLAP, "CL_MEM_COPY_OVERLAP"},
    {CL_IMAGE_FORMAT_MISMATCH, "CL_IMAGE_FORMAT_MISMATCH"},
    {CL_IMAGE_FORMAT_NOT_SUPPORTED, "CL_IMAGE_FORMAT_NOT_SUPPORTED"},
    {CL_BUILD_PROGRAM_FAILURE, "CL_BUILD_PROGRAM_FAILURE"},
    {CL_MAP_FAILURE, "CL_MAP_FAILURE"},
    {CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"},
    {CL_COMPILE_PROGRAM_FAILURE, "CL_COMPILE_PROGRAM_FAILURE"},
    {CL_LINKER_NOT_AVAILABLE, "CL_LINKER_NOT_AVAILABLE"},
    {CL_LINK_PROGRAM_FAILURE, "CL_LINK_PROGRAM_FAILURE"},
    {CL_DEVICE_PARTITION_FAILED, "CL_DEVICE_PARTITION_FAILED"},
    {CL_KERNEL_ARG_INFO_NOT_AVAILABLE, "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"},
    {CL_INVALID_DEVICE_TYPE, "CL_INVALID_DEVICE_TYPE"},
    {CL_INVALID_PLATFORM, "CL_INVALID_PLATFORM"},
    {CL_INVALID_DEVICE, "CL_INVALID_DEVICE"},
    {CL_INVALID_CONTEXT, "CL_INVALID_CONTEXT"},
    {CL_INVALID_QUEUE_PROPERTIES, "CL_INVALID_QUEUE_PROPERTIES"},
    {CL_INVALID_HOST_PTR, "CL_INVALID_HOST_PTR"},
    {CL_INVALID_MEM_OBJECT, "CL_INVALID_MEM_OBJECT"},
    {CL_INVALID_IMAGE_FORMAT_DESCRIPTOR, "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"},
    {CL_INVALID_IMAGE_SIZE, "CL_INVALID_IMAGE_SIZE"},
    {CL_INVALID_BINARY, "CL_INVALID_BINARY"},
    {CL_INVALID_BUILD_OPTIONS, "CL_INVALID_BUILD_OPTIONS"},
    {CL_INVALID_PROGRAM, "CL_INVALID_PROGRAM"},
    {CL_INVALID_PROGRAM_EXECUTABLE, "CL_INVALID_PROGRAM_EXECUTABLE"},
    {CL_INVALID_KERNEL_DEFINITION, "CL_INVALID_KERNEL_DEFINITION"},
    {CL_INVALID_KERNEL, "CL_INVALID_KERNEL"},
    {CL_INVALID_ARG_INDEX, "CL_INVALID_ARG_INDEX"},
    {CL_INVALID_ARG_SIZE, "CL_INVALID_ARG_SIZE"},
    {CL_INVALID_KERNEL_ARGS, "CL_INVALID_KERNEL_ARGS"},
    {CL_INVALID_WORK_DIMENSION, "CL_INVALID_WORK_DIMENSION"},
    {CL_INVALID_WORK_ITEM_SIZE, "CL_INVALID_WORK_ITEM_SIZE"},
    {CL_INVALID_GLOBAL_OFFSET, "CL_INVALID_GLOBAL_OFFSET"},
    {CL_INVALID_EVENT, "CL_INVALID_EVENT"},
    {CL_INVALID_OPERATION, "CL_INVALID_OPERATION"},
    {CL_INVALID_GL_OBJECT, "CL_INVALID_GL_OBJECT"},
    {CL_INVALID_MIP_LEVEL, "CL_INVALID_MIP_LEVEL"},
    {CL_INVALID_GLOBAL_WORK_SIZE, "CL_INVALID_GLOBAL_WORK_SIZE"},
    {CL_INVALID_PROPERTY, "CL_INVALID_PROPERTY"},
    {CL_INVALID_COMPILER_OPTIONS, "CL_INVALID_COMPILER_OPTIONS"},
    {CL_INVALID_DEVICE_PARTITION_COUNT, "CL_INVALID_DEVICE_PARTITION_COUNT"},
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
};

const char *kiln_cl_error_name(cl_int err) {
    for (size_t i = 0; i < sizeof cl_errors / sizeof cl_errors[0]; i++)
        if (cl_errors[i].code == err) return cl_errors[i].name;
    return "CL_UNKNOWN_ERROR";
}

kiln_status kiln_cl_fail(cl_int err, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    kiln_status s = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                     err == CL_INVALID_BUFFER_SIZE)
                        ? KILN_OUT_OF_MEMORY
                        : KILN_OPENCL;
    return kiln_error(s, "%s: %s (%d)", what, kiln_cl_error_name(err), (int)err);
}

static void info_str(cl_device_id d, cl_device_info what, char *out, size_t n) {
    out[0] = '\0';
    if (clGetDeviceInfo(d, what, n, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[n - 1] = '\0';
}

static void fill_device(kiln_device_info *di, cl_platform_id p, cl_device_id d) {
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof di->platform, di->platform, NULL);
    clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof di->platform_version, di->platform_version,
                      NULL);
    di->platform[sizeof di->platform - 1] = '\0';
    di->platform_version[sizeof di->platform_version - 1] = '\0';
    info_str(d, CL_DEVICE_NAME, di->name, sizeof di->name);
    info_str(d, CL_DEVICE_VENDOR, di->vendor, sizeof di->vendor);
    info_str(d, CL_DRIVER_VERSION, di->driver_version, sizeof di->driver_version);
    info_str(d, CL_DEVICE_OPENCL_C_VERSION, di->opencl_c_version, sizeof di->opencl_c_version);
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    di->type = (t & CL_DEVICE_TYPE_GPU)           ? KILN_DEVICE_GPU
               : (t & CL_DEVICE_TYPE_ACCELERATOR) ? KILN_DEVICE_ACCEL
                                                  : KILN_DEVICE_CPU;
    cl_uint u = 0;
    cl_ulong ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL) == CL_SUCCESS)
        di->compute_units = u;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL) == CL_SUCCESS)
        di->clock_mhz = u;
    if (clGetDeviceInfo(d, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof u, &u, NULL) ==
        CL_SUCCESS)
        di->pref_vec_float = u;
    cl_device_fp_config fp = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL) == CL_SUCCESS)
        di->fma = (fp & CL_FP_FMA) != 0;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->global_mem = ul;
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->local_mem = ul;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        di->max_alloc = ul;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof di->max_work_group,
                    &di->max_work_group, NULL);
    cl_uint dims = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof dims, &dims, NULL);
    if (dims >= 3)
        clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof di->max_work_item,
                        di->max_work_item, NULL);
    size_t ext_len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS && ext_len) {
        char *ext = malloc(ext_len + 1);
        if (ext && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) == CL_SUCCESS) {
            ext[ext_len] = '\0';
            di->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
            di->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
        }
        free(ext);
    }
}

/* Enumerates platforms/devices; the ids come back through plats/devs when asked. */
static kiln_status enumerate(kiln_device_info **list, int *count, cl_platform_id *want_p,
                             cl_device_id *want_d, int want_index) {
    *list = NULL;
    *count = 0;
    /* PoCL's default thread placement lets some processes run its CPU device on one core
       at half speed (measured with kiln bench gemm); pinning one worker per core avoids it.
       Only a default: the user's own POCL_AFFINITY wins, and a process bound to some of the
       cores (mpirun's ranks, taskset) is left alone: PoCL pins its workers from core 0 up
       whatever the binding, which put every rank's worker on core 0. */
    cpu_set_t mask;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int bound = !sched_getaffinity(0, sizeof mask, &mask) && CPU_COUNT(&mask) < online;
    if (!bound) setenv("POCL_AFFINITY", "1", 0);
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) return KILN_OK; /* no platform: only the cpu backend */
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) return kiln_error(KILN_OUT_OF_MEMORY, "devices: out of host memory");
    clGetPlatformIDs(np, plats, NULL);
    kiln_device_info *out = NULL;
    int n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || !nd)
            continue;
        cl_device_id *ds = calloc(nd, sizeof *ds);
        kiln_device_info *grown = realloc(out, sizeof *out * (size_t)(n + (int)nd));
        if (!ds || !grown) {
            free(ds);
            free(grown ? grown : out);
            free(plats);
            return kiln_error(KILN_OUT_OF_MEMORY, "devices: out of host memory");
        }
        out = grown;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ds, NULL);
        for (cl_uint d = 0; d < nd; d++) {
            kiln_device_info *di = &out[n];
            memset(di, 0, sizeof *di);
            di->index = n;
            di->platform_index = (int)p;
            di->device_index = (int)d;
            fill_device(di, plats[p], ds[d]);
            if (n == want_index && want_p) {
                *want_p = plats[p];
                *want_d = ds[d];
            }
            n++;
        }
        free(ds);
    }
    free(plats);
    *list = out;
    *count = n;
    return KILN_OK;
}

kiln_status kiln_devices_list(kiln_device_info **list, int *count) {
    return enumerate(list, count, NULL, NULL, -1);
}

kiln_status kiln_cl_find_device(int index, cl_platform_id *p, cl_device_id *d) {
    kiln_device_info *list;
    int n;
    *p = NULL;
    *d = NULL;
    kiln_status st = enumerate(&list, &n, p, d, index);
    free(list);
    if (st) return st;
    if (!*d) return kiln_error(KILN_NO_DEVICE, "OpenCL device %d disappeared", index);
    return KILN_OK;
}
