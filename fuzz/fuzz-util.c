#include "fuzz-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "backend-impl.h"

static char tmpdir[256];

static void remove_tmpdir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", tmpdir);
}

const char *fuzz_tmpdir(void) {
    if (tmpdir[0]) return tmpdir;
    /* /dev/shm keeps the per-input file writes off the disk. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = 0;
        return NULL;
    }
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *fuzz_path(const char *dir, const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

int fuzz_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

uint8_t *fuzz_gzip(const uint8_t *src, size_t n, size_t *out_n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip wrapper, what `gzip` writes and gzopen reads. */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    uint8_t *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

kiln_backend_t fuzz_cpu_backend(void) {
    kiln_backend_t be = calloc(1, sizeof *be);
    if (!be) return NULL;
    snprintf(be->name, sizeof be->name, "cpu");
    if (kiln_cpu_backend_setup(be) != KILN_OK) {
        free(be);
        return NULL;
    }
    return be;
}

kiln_status fuzz_ckpt_tensors(kiln_backend_t be, kiln_ckpt_tensor out[FUZZ_CKPT_TENSORS],
                              kiln_tensor storage[FUZZ_CKPT_TENSORS]) {
    static const struct {
        const char *name;
        kiln_dtype dtype;
        int ndim;
        int64_t shape[3];
    } spec[FUZZ_CKPT_TENSORS] = {{"conv.weight", KILN_F32, 2, {2, 3}},
                                 {"step", KILN_I32, 1, {4}},
                                 {"mask", KILN_U8, 3, {1, 1, 5}},
                                 {"half", KILN_F16, 2, {1, 2}}};
    for (int i = 0; i < FUZZ_CKPT_TENSORS; i++) {
        kiln_status st =
            kiln_tensor_alloc(&storage[i], be, spec[i].dtype, spec[i].ndim, spec[i].shape);
        if (st != KILN_OK) return st;
        uint8_t bytes[64];
        size_t n = kiln_tensor_extent(&storage[i]);
        for (size_t k = 0; k < n && k < sizeof bytes; k++) bytes[k] = (uint8_t)(k * 37 + i);
        if ((st = kiln_tensor_set(&storage[i], bytes, n)) != KILN_OK) return st;
        out[i].name = spec[i].name;
        out[i].tensor = &storage[i];
    }
    return KILN_OK;
}
