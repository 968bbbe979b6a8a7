/* Kernel sources: embedded into the library at build time (every kernels/NAME.cl as a byte array),
   or read from the source tree in kernel-development builds (KILN_KERNELS_FROM_SOURCE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl-impl.h"

extern const struct kiln_embedded_file kiln_embedded_kernels[];
extern const size_t kiln_embedded_kernels_count;

kiln_status kiln_kernel_source(const char *file, char **text, size_t *len) {
#ifdef KILN_KERNEL_SOURCE_DIR
    const char *dir = getenv("KILN_KERNEL_DIR");
    if (!dir || !*dir) dir = KILN_KERNEL_SOURCE_DIR;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_NOT_FOUND, "kernel file %s cannot be opened", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return kiln_error(KILN_IO, "kernel file %s cannot be read", path);
    }
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = (size_t)n;
    return KILN_OK;
#else
    for (size_t i = 0; i < kiln_embedded_kernels_count; i++)
        if (!strcmp(kiln_embedded_kernels[i].file, file)) {
            char *buf = malloc(kiln_embedded_kernels[i].len + 1);
            if (!buf) return kiln_error(KILN_OUT_OF_MEMORY, "kernel %s: out of host memory", file);
            memcpy(buf, kiln_embedded_kernels[i].data, kiln_embedded_kernels[i].len);
            buf[kiln_embedded_kernels[i].len] = '\0';
            *text = buf;
            *len = kiln_embedded_kernels[i].len;
            return KILN_OK;
        }
    return kiln_error(KILN_NOT_FOUND, "kernel file kernels/%s is not embedded in this build", file);
#endif
}

uint64_t kiln_kernels_hash(void) {
    uint64_t h = KILN_HASH_INIT;
    for (size_t i = 0; i < kiln_embedded_kernels_count; i++) {
        h = kiln_hash64(h, kiln_embedded_kernels[i].file, strlen(kiln_embedded_kernels[i].file));
        h = kiln_hash64(h, kiln_embedded_kernels[i].data, kiln_embedded_kernels[i].len);
    }
    return h;
}
