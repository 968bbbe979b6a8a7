/* Programs build on first use and are cached: in memory per context, and on disk as device
   binaries keyed by a hash of (source, options, device, driver, platform), so a second
   process compiles nothing. A driver with its own kernel cache (PoCL, see own_cache) is left
   to it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl-impl.h"

#define CACHE_MAGIC "KILNPRG1"

typedef struct {
    char magic[8];
    uint64_t key[2];
    uint64_t size;
    uint64_t checksum;
} cache_header;

static void program_key(kiln_cl_ctx *cl, const char *src, size_t len, const char *options,
                        uint64_t key[2]) {
    char dev[256] = "", drv[128] = "", plat[256] = "", pver[256] = "";
    clGetDeviceInfo(cl->device, CL_DEVICE_NAME, sizeof dev - 1, dev, NULL);
    clGetDeviceInfo(cl->device, CL_DRIVER_VERSION, sizeof drv - 1, drv, NULL);
    clGetPlatformInfo(cl->platform, CL_PLATFORM_NAME, sizeof plat - 1, plat, NULL);
    clGetPlatformInfo(cl->platform, CL_PLATFORM_VERSION, sizeof pver - 1, pver, NULL);
    const char *parts[] = {"kiln-program-v1", options, dev, drv, plat, pver};
    /* Two FNV-1a streams with different seeds give a 128-bit key. */
    uint64_t seeds[2] = {KILN_HASH_INIT, 0x84222325cbf29ce4ULL};
    for (int s = 0; s < 2; s++) {
        uint64_t h = kiln_hash64(seeds[s], src, len);
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            h = kiln_hash64(h, parts[i], strlen(parts[i]) + 1);
        key[s] = h;
    }
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                buf[n] = '\0';
                *len = (size_t)n;
            } else {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

static kiln_status build(kiln_cl_ctx *cl, cl_program prog, const char *file, const char *options) {
    cl_int err = clBuildProgram(prog, 1, &cl->device, options, NULL, NULL);
    if (err == CL_SUCCESS) return KILN_OK;
    size_t log_len = 0;
    clGetProgramBuildInfo(prog, cl->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len);
    char *log = malloc(log_len + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(prog, cl->device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL);
        log[log_len] = '\0';
    }
    char dev[128] = "";
    clGetDeviceInfo(cl->device, CL_DEVICE_NAME, sizeof dev - 1, dev, NULL);
    kiln_status st = kiln_error(KILN_BUILD,
                                "kernel file kernels/%s failed to build on %s with options "
                                "'%s': %s (%d); build log:\n%s",
                                file, dev, options, kiln_cl_error_name(err), (int)err,
                                log && *log ? log : "(empty)");
    free(log);
    return st;
}

/* Tries the disk cache; returns NULL (and removes the entry) when it is unusable. */
static cl_program load_cached(kiln_cl_ctx *cl, const char *path, const uint64_t key[2],
                              const char *file, const char *options) {
    size_t len = 0;
    char *data = read_file(path, &len);
    if (!data) return NULL;
    const char *why = NULL;
    cache_header h;
    cl_program prog = NULL;
    if (len < sizeof h) {
        why = "shorter than its header";
    } else {
        memcpy(&h, data, sizeof h);
        if (memcmp(h.magic, CACHE_MAGIC, 8))
            why = "bad magic";
        else if (h.key[0] != key[0] || h.key[1] != key[1])
            why = "key mismatch";
        else if (h.size != len - sizeof h)
            why = "truncated or padded";
        else if (h.checksum != kiln_hash64(KILN_HASH_INIT, data + sizeof h, (size_t)h.size))
            why = "checksum mismatch";
    }
    if (!why) {
        const unsigned char *bin = (const unsigned char *)data + sizeof h;
        size_t bin_len = (size_t)h.size;
        cl_int bin_status = CL_SUCCESS, err;
        prog = clCreateProgramWithBinary(cl->context, 1, &cl->device, &bin_len, &bin, &bin_status,
                                         &err);
        if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
            why = "the driver rejected the binary";
            if (prog) clReleaseProgram(prog);
            prog = NULL;
        } else if (build(cl, prog, file, options) != KILN_OK) {
            why = "the binary did not build";
            clReleaseProgram(prog);
            prog = NULL;
            kiln_clear_error();
        }
    }
    free(data);
    if (why) {
        kiln_log(KILN_LOG_WARN, "program cache entry %s is unusable (%s): removed, rebuilding",
                 path, why);
        unlink(path);
        cl->stats.cache_rejected++;
    }
    return prog;
}

static void store_cached(kiln_cl_ctx *cl, cl_program prog, const char *path,
                         const uint64_t key[2]) {
    size_t bin_len = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bin_len, &bin_len, NULL) !=
            CL_SUCCESS ||
        bin_len == 0)
        return; /* the driver offers no binaries: nothing to cache */
    unsigned char *buf = malloc(sizeof(cache_header) + bin_len);
    if (!buf) return;
    unsigned char *bin = buf + sizeof(cache_header);
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS) {
        cache_header h;
        memcpy(h.magic, CACHE_MAGIC, 8);
        h.key[0] = key[0];
        h.key[1] = key[1];
        h.size = bin_len;
        h.checksum = kiln_hash64(KILN_HASH_INIT, bin, bin_len);
        memcpy(buf, &h, sizeof h);
        if (kiln_write_file_atomic(path, buf, sizeof h + bin_len) == KILN_OK)
            cl->stats.cache_stored++;
        else
            kiln_log(KILN_LOG_WARN, "cannot store compiled program: %s", kiln_last_error());
    }
    free(buf);
}

kiln_status kiln_cl_get_program(kiln_cl_ctx *cl, const char *file, const char *options,
                                cl_program *out) {
    if (!options) options = "";
    for (kiln_cl_program *p = cl->programs; p; p = p->next)
        if (!strcmp(p->file, file) && !strcmp(p->options, options)) {
            *out = p->program;
            return KILN_OK;
        }
    if (strlen(file) >= sizeof cl->programs->file ||
        strlen(options) >= sizeof cl->programs->options)
        return kiln_error(KILN_INVALID_ARGUMENT, "kernel file name or options too long: %s '%s'",
                          file, options);
    char *body;
    size_t body_len;
    kiln_status st = kiln_kernel_source(file, &body, &body_len);
    if (st) return st;
    /* Kernels multiply-add through KILN_MADD: fma() where the device fuses in hardware, else
       mad(), which the device may compute as it likes. A device without CL_FP_FMA must still
       round fma() exactly, in software: Mesa's llvmpipe then ran kiln's GEMM 7x slower and its
       peak probe at 0.1 instead of 25 GFLOP/s. The #line makes compiler messages name the
       kernel file. */
    const char *madd = cl->fma ? "#define KILN_MADD(a, b, c) fma(a, b, c)\n"
                               : "#define KILN_MADD(a, b, c) mad(a, b, c)\n";
    size_t cap = body_len + strlen(madd) + strlen(file) + 32;
    char *src = malloc(cap);
    if (!src) {
        free(body);
        return kiln_error(KILN_OUT_OF_MEMORY, "program %s: out of host memory", file);
    }
    int head = snprintf(src, cap, "%s#line 1 \"%s\"\n", madd, file);
    memcpy(src + head, body, body_len);
    size_t len = (size_t)head + body_len;
    src[len] = '\0';
    free(body);

    uint64_t key[2];
    program_key(cl, src, len, options, key);
    char dir[4096], path[4400];
    int cached = 0;
    if (!cl->own_cache) kiln_cache_dir("programs", dir, sizeof dir, &cached);
    if (cached)
        snprintf(path, sizeof path, "%s/%016" PRIx64 "%016" PRIx64 ".bin", dir, key[0], key[1]);

    cl_program prog = cached ? load_cached(cl, path, key, file, options) : NULL;
    if (prog) {
        cl->stats.programs_loaded++;
    } else {
        cl_int err;
        const char *srcs[1] = {src};
        prog = clCreateProgramWithSource(cl->context, 1, srcs, &len, &err);
        if (err != CL_SUCCESS) {
            free(src);
            return kiln_cl_fail(err, "creating program from kernels/%s", file);
        }
        st = build(cl, prog, file, options);
        if (st) {
            clReleaseProgram(prog);
            free(src);
            return st;
        }
        if (cl->own_cache)
            cl->stats.programs_driver++;
        else
            cl->stats.programs_compiled++;
        if (cached) store_cached(cl, prog, path, key);
    }
    free(src);
    kiln_cl_program *e = calloc(1, sizeof *e);
    if (!e) {
        clReleaseProgram(prog);
        return kiln_error(KILN_OUT_OF_MEMORY, "program %s: out of host memory", file);
    }
    snprintf(e->file, sizeof e->file, "%s", file);
    snprintf(e->options, sizeof e->options, "%s", options);
    e->program = prog;
    e->next = cl->programs;
    cl->programs = e;
    *out = prog;
    return KILN_OK;
}

kiln_status kiln_cl_get_kernel(kiln_cl_ctx *cl, const char *file, const char *name,
                               const char *options, cl_kernel *out) {
    if (!options) options = "";
    for (kiln_cl_kernel *k = cl->kernels; k; k = k->next)
        if (!strcmp(k->name, name) && !strcmp(k->file, file) && !strcmp(k->options, options)) {
            *out = k->kernel;
            return KILN_OK;
        }
    if (strlen(name) >= sizeof cl->kernels->name)
        return kiln_error(KILN_INVALID_ARGUMENT, "kernel name too long: %s", name);
    cl_program prog;
    kiln_status st = kiln_cl_get_program(cl, file, options, &prog);
    if (st) return st;
    cl_int err;
    cl_kernel kern = clCreateKernel(prog, name, &err);
    if (err != CL_SUCCESS) return kiln_cl_fail(err, "kernel %s in kernels/%s", name, file);
    kiln_cl_kernel *e = calloc(1, sizeof *e);
    if (!e) {
        clReleaseKernel(kern);
        return kiln_error(KILN_OUT_OF_MEMORY, "kernel %s: out of host memory", name);
    }
    snprintf(e->file, sizeof e->file, "%s", file);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->options, sizeof e->options, "%s", options);
    e->kernel = kern;
    e->next = cl->kernels;
    cl->kernels = e;
    *out = kern;
    return KILN_OK;
}

void kiln_cl_release_programs(kiln_cl_ctx *cl) {
    while (cl->kernels) {
        kiln_cl_kernel *k = cl->kernels;
        cl->kernels = k->next;
        clReleaseKernel(k->kernel);
        free(k);
    }
    while (cl->programs) {
        kiln_cl_program *p = cl->programs;
        cl->programs = p->next;
        clReleaseProgram(p->program);
        free(p);
    }
}
