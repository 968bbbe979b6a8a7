/* ckpt-diff A B [TOL]: compares every F32 tensor of two safetensors checkpoints (same names and
   shapes required) and prints the largest difference, relative to the tensor's largest
   magnitude: max |a - b| / max(max |a|, 1e-6). Exits 1 when a tensor is missing, has another
   shape, or differs by more than TOL (default 1e-4). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct file {
    char *data;
    size_t size;
    cJSON *header;
    size_t base;
} file;

static int load(const char *path, file *f) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "ckpt-diff: cannot open %s\n", path);
        return -1;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->data = malloc((size_t)n + 1);
    f->size = (size_t)n;
    if (!f->data || fread(f->data, 1, f->size, fp) != f->size || n < 8) {
        fclose(fp);
        fprintf(stderr, "ckpt-diff: cannot read %s\n", path);
        return -1;
    }
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)f->data[i];
    if (hl > f->size - 8) {
        fprintf(stderr, "ckpt-diff: %s: bad header length\n", path);
        return -1;
    }
    f->header = cJSON_ParseWithLength(f->data + 8, (size_t)hl);
    f->base = 8 + (size_t)hl;
    if (!f->header) {
        fprintf(stderr, "ckpt-diff: %s: bad header\n", path);
        return -1;
    }
    return 0;
}

/* The tensor's floats and count, or NULL. */
static const float *entry(const file *f, const cJSON *e, size_t *count) {
    const cJSON *dt = cJSON_GetObjectItem(e, "dtype"),
                *off = cJSON_GetObjectItem(e, "data_offsets");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || cJSON_GetArraySize(off) != 2)
        return NULL;
    size_t lo = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t hi = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    if (hi < lo || f->base + hi > f->size) return NULL;
    *count = (hi - lo) / sizeof(float);
    return (const float *)(const void *)(f->data + f->base + lo);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ckpt-diff A.safetensors B.safetensors [TOL]\n");
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 1e-4;
    file a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (load(argv[1], &a) || load(argv[2], &b)) return 1;
    double worst = 0;
    const char *worst_name = "";
    int bad = 0, tensors = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a.header) {
        if (!strcmp(e->string, "__metadata__")) continue;
        const cJSON *o = cJSON_GetObjectItem(b.header, e->string);
        size_t na = 0, nb = 0;
        const float *x = entry(&a, e, &na), *y = o ? entry(&b, o, &nb) : NULL;
        if (!x) continue;
        if (!y || na != nb) {
            fprintf(stderr, "ckpt-diff: %s: missing or another size in %s\n", e->string, argv[2]);
            bad = 1;
            continue;
        }
        double mag = 1e-6, diff = 0;
        for (size_t i = 0; i < na; i++) {
            float u, v;
            memcpy(&u, x + i, sizeof u);
            memcpy(&v, y + i, sizeof v);
            mag = fmax(mag, fabs(u));
            diff = fmax(diff, fabs((double)u - v));
            if (!isfinite(u) || !isfinite(v)) diff = INFINITY;
        }
        double rel = diff / mag;
        tensors++;
        if (rel > worst) worst = rel, worst_name = e->string;
    }
    printf("%d tensors; largest relative difference %.3g (%s), tolerance %.3g\n", tensors, worst,
           worst_name, tol);
    cJSON_Delete(a.header);
    cJSON_Delete(b.header);
    free(a.data);
    free(b.data);
    return bad || !(worst <= tol) || !tensors;
}
