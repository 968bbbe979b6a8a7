/* `kiln data pack`: tar shards of KEY.jpg + KEY.cls members (the webdataset convention, readable
   by `tar` and by webdataset), so a large set is a few big sequential files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend-impl.h"
#include "data/data-impl.h"

static kiln_status tar_member(FILE *f, const char *name, const void *data, size_t n,
                              uint64_t *written) {
    char h[512];
    memset(h, 0, sizeof(h));
    snprintf(h, 100, "%s", name);
    snprintf(h + 100, 8, "%07o", 0644);
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    static const char zero[512];
    size_t pad = (512 - n % 512) % 512;
    if (fwrite(h, 1, 512, f) != 512 || fwrite(data, 1, n, f) != n || fwrite(zero, 1, pad, f) != pad)
        return kiln_error(KILN_IO, "write failed: %s", strerror(errno));
    *written += 512 + n + pad;
    return KILN_OK;
}

static kiln_status close_shard(FILE *f, const char *path) {
    static const char zero[1024];
    int bad = fwrite(zero, 1, sizeof(zero), f) != sizeof(zero);
    bad |= fclose(f) != 0;
    return bad ? kiln_error(KILN_IO, "%s: write failed: %s", path, strerror(errno)) : KILN_OK;
}

kiln_status kiln_data_pack(kiln_dataset_t ds, const char *out_dir, uint64_t shard_bytes,
                           int *shards_written) {
    if (ds->kind == KILN_SRC_IDX)
        return kiln_error(KILN_INVALID_ARGUMENT, "pack: IDX sources are already single files");
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return kiln_error(KILN_IO, "pack: cannot create %s: %s", out_dir, strerror(errno));
    if (!shard_bytes) shard_bytes = (uint64_t)256 << 20;
    char path[8192];
    snprintf(path, sizeof(path), "%s/classes.txt", out_dir);
    FILE *cf = fopen(path, "w");
    if (!cf) return kiln_error(KILN_IO, "pack: %s: %s", path, strerror(errno));
    for (int c = 0; c < ds->nclasses; c++) fprintf(cf, "%s\n", ds->classes[c]);
    if (fclose(cf) != 0) return kiln_error(KILN_IO, "pack: %s: write failed", path);
    FILE *f = NULL;
    uint64_t written = 0;
    int shard = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < ds->count && st == KILN_OK; i++) {
        if (!f || written >= shard_bytes) {
            if (f) st = close_shard(f, path);
            if (st != KILN_OK) break;
            snprintf(path, sizeof(path), "%s/shard-%06d.tar", out_dir, shard++);
            f = fopen(path, "wb");
            if (!f) {
                st = kiln_error(KILN_IO, "pack: %s: %s", path, strerror(errno));
                break;
            }
            written = 0;
        }
        size_t n = 0;
        st = kiln_dataset_read_bytes(ds, i, &buf, &cap, &n);
        if (st != KILN_OK) {
            kiln_error_append(" (reading %s)", kiln_dataset_sample_name(ds, i));
            break;
        }
        char name[64], cls[32];
        snprintf(name, sizeof(name), "%08zu.jpg", i);
        st = tar_member(f, name, buf, n, &written);
        snprintf(name, sizeof(name), "%08zu.cls", i);
        int cl = snprintf(cls, sizeof(cls), "%d", ds->samples[i].label);
        if (st == KILN_OK) st = tar_member(f, name, cls, (size_t)cl, &written);
        if (st != KILN_OK) kiln_error_append(" (%s)", path);
    }
    if (f) {
        kiln_status s2 = close_shard(f, path);
        if (st == KILN_OK) st = s2;
    }
    free(buf);
    if (shards_written) *shards_written = shard;
    return st;
}
