/* safetensors checkpoints: atomic writes and validate-everything-first reads. */
#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend-impl.h"
#include "kiln/checkpoint.h"

/* The safetensors reference implementation refuses headers above 100 MB. */
typedef unsigned long long ull;

#define MAX_HEADER ((uint64_t)100 << 20)

static const struct {
    const char *name;
    kiln_dtype dtype;
} dtypes[] = {{"F32", KILN_F32}, {"F16", KILN_F16}, {"U8", KILN_U8}, {"I32", KILN_I32}};

static const char *dtype_tag(kiln_dtype t) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == t) return dtypes[i].name;
    return NULL;
}

typedef struct {
    const char *name;
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    uint64_t begin, end;
} entry;

typedef struct {
    FILE *f;
    const char *path;
    uint64_t data_start, data_size;
    cJSON *header;
    entry *e;
    int n;
} ckpt;

static void ckpt_close(ckpt *c) {
    if (c->f) fclose(c->f);
    cJSON_Delete(c->header);
    free(c->e);
}

static int cmp_begin(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static kiln_status bad(const ckpt *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static kiln_status bad(const ckpt *c, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_CORRUPT, "checkpoint %s: %s", c->path, what);
}

/* Reads and validates the header and every entry; no tensor data is read. */
static kiln_status ckpt_open(const char *path, ckpt *c) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->f = fopen(path, "rb");
    if (!c->f) return kiln_error(KILN_IO, "checkpoint %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(c->f), &sb)) return kiln_error(KILN_IO, "checkpoint %s: cannot stat", path);
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char len8[8];
    if (fsize < 8 || fread(len8, 1, 8, c->f) != 8)
        return bad(c, "%llu bytes: too short for a header length", (ull)fsize);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > MAX_HEADER || hlen > fsize - 8)
        return bad(c, "header length %llu exceeds the file (%llu bytes) or 100 MB", (ull)hlen,
                   (ull)fsize);
    char *text = malloc(hlen + 1);
    if (!text)
        return kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: header of %llu bytes", path,
                          (unsigned long long)hlen);
    if (fread(text, 1, hlen, c->f) != hlen) {
        free(text);
        return kiln_error(KILN_IO, "checkpoint %s: cannot read the header", path);
    }
    text[hlen] = '\0';
    c->header = cJSON_ParseWithLength(text, hlen);
    free(text);
    if (!cJSON_IsObject(c->header)) return bad(c, "the header is not a JSON object");
    c->data_start = 8 + hlen;
    c->data_size = fsize - c->data_start;
    int count = cJSON_GetArraySize(c->header);
    c->e = calloc((size_t)count + 1, sizeof *c->e);
    if (!c->e) return kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: out of host memory", path);
    for (cJSON *it = c->header->child; it; it = it->next) {
        if (!it->string) return bad(c, "an unnamed header entry");
        if (!strcmp(it->string, "__metadata__")) {
            for (cJSON *m = it->child; m; m = m->next)
                if (!cJSON_IsString(m))
                    return bad(c, "metadata '%s' is not a string", m->string ? m->string : "?");
            continue;
        }
        entry *e = &c->e[c->n];
        e->name = it->string;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2)
            return bad(c, "tensor '%s' lacks dtype, shape or data_offsets", e->name);
        int known = 0;
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
            if (!strcmp(dt->valuestring, dtypes[d].name)) {
                e->dtype = dtypes[d].dtype;
                known = 1;
            }
        if (!known)
            return bad(c, "tensor '%s' has an unsupported dtype '%s'", e->name, dt->valuestring);
        e->ndim = cJSON_GetArraySize(shape);
        if (e->ndim > KILN_MAX_DIMS)
            return bad(c, "tensor '%s' has %d dims (at most %d)", e->name, e->ndim, KILN_MAX_DIMS);
        uint64_t elems = 1;
        int d = 0;
        for (cJSON *s = shape->child; s; s = s->next, d++) {
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > 9e15 ||
                s->valuedouble != (double)(int64_t)s->valuedouble)
                return bad(c, "tensor '%s' has a bad dimension", e->name);
            e->shape[d] = (int64_t)s->valuedouble;
            if (e->shape[d] && elems > UINT64_MAX / 16 / (uint64_t)e->shape[d])
                return bad(c, "tensor '%s' is impossibly large", e->name);
            elems *= (uint64_t)e->shape[d];
        }
        cJSON *b = offs->child, *en = b->next;
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 ||
            en->valuedouble < b->valuedouble || en->valuedouble > 9e15)
            return bad(c, "tensor '%s' has bad data_offsets", e->name);
        e->begin = (uint64_t)b->valuedouble;
        e->end = (uint64_t)en->valuedouble;
        if (e->end - e->begin != elems * kiln_dtype_size(e->dtype))
            return bad(c, "tensor '%s' spans %llu bytes but its shape needs %llu", e->name,
                       (ull)(e->end - e->begin), (ull)(elems * kiln_dtype_size(e->dtype)));
        if (e->end > c->data_size)
            return bad(c, "tensor '%s' ends at byte %llu beyond the data (%llu bytes)", e->name,
                       (ull)e->end, (ull)c->data_size);
        c->n++;
    }
    /* The byte buffer must be covered exactly: sorted by offset, each entry starts where the
       previous ended (an overlap or a hole is corruption). */
    entry *sorted = malloc(sizeof *sorted * (size_t)(c->n ? c->n : 1));
    if (!sorted) return kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: out of host memory", path);
    memcpy(sorted, c->e, sizeof *sorted * (size_t)c->n);
    /* Duplicate names are neighbours once sorted (comparing every pair is quadratic in the
       entries of a hostile 100 MB header: hours). */
    qsort(sorted, (size_t)c->n, sizeof *sorted, cmp_name);
    kiln_status st = KILN_OK;
    for (int i = 1; i < c->n && !st; i++)
        if (!strcmp(sorted[i - 1].name, sorted[i].name))
            st = bad(c, "tensor '%s' appears twice", sorted[i].name);
    qsort(sorted, (size_t)c->n, sizeof *sorted, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < c->n && !st; i++) {
        if (sorted[i].begin != at)
            st = bad(
                c,
                sorted[i].begin < at
                    ? "tensor '%s' overlaps the previous one (starts at %llu, previous ends at "
                      "%llu)"
                    : "tensor '%s' leaves a hole before it (starts at %llu, previous ends at %llu)",
                sorted[i].name, (ull)sorted[i].begin, (ull)at);
        at = sorted[i].end;
    }
    if (!st && at != c->data_size)
        st = bad(c, "the data holds %llu bytes but the tensors cover %llu", (ull)c->data_size,
                 (ull)at);
    free(sorted);
    return st;
}

static const entry *find(const ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].name, name)) return &c->e[i];
    return NULL;
}

kiln_status kiln_checkpoint_load(const char *path, const kiln_ckpt_tensor *tensors, int n) {
    ckpt c;
    kiln_status st = ckpt_open(path, &c);
    /* Every requested tensor must match before any data moves. */
    for (int i = 0; i < n && !st; i++) {
        const kiln_tensor *t = tensors[i].tensor;
        const entry *e = find(&c, tensors[i].name);
        char want[96];
        kiln_tensor_describe(t, want, sizeof want);
        if (!e) {
            st = kiln_error(KILN_NOT_FOUND, "checkpoint %s: no tensor '%s' (the model expects %s)",
                            path, tensors[i].name, want);
            break;
        }
        int same = e->dtype == t->dtype && e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same) {
            kiln_tensor got;
            kiln_tensor_init(&got, e->dtype, e->ndim ? e->ndim : 1, e->shape);
            char have[96];
            kiln_tensor_describe(&got, have, sizeof have);
            st = kiln_error(KILN_SHAPE, "checkpoint %s: tensor '%s' is %s, the model expects %s",
                            path, tensors[i].name, have, want);
        } else if (!kiln_tensor_is_contiguous(t) || !t->buffer) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "checkpoint load: tensor '%s' is not contiguous storage",
                            tensors[i].name);
        }
    }
    for (int i = 0; i < n && !st; i++) {
        const entry *e = find(&c, tensors[i].name);
        size_t bytes = (size_t)(e->end - e->begin);
        void *h = malloc(bytes ? bytes : 1);
        if (!h) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: %zu bytes for '%s'", path, bytes,
                            e->name);
            break;
        }
        if (fseek(c.f, (long)(c.data_start + e->begin), SEEK_SET) ||
            fread(h, 1, bytes, c.f) != bytes)
            st = kiln_error(KILN_IO, "checkpoint %s: cannot read '%s'", path, e->name);
        if (!st) st = kiln_tensor_set(tensors[i].tensor, h, bytes);
        free(h);
    }
    ckpt_close(&c);
    return st;
}

kiln_status kiln_checkpoint_metadata(const char *path, const char *key, char **value) {
    *value = NULL;
    ckpt c;
    kiln_status st = ckpt_open(path, &c);
    if (!st) {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(c.header, "__metadata__");
        cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, key) : NULL;
        if (cJSON_IsString(v) && !(*value = strdup(v->valuestring)))
            st = kiln_error(KILN_OUT_OF_MEMORY, "checkpoint metadata: out of host memory");
    }
    ckpt_close(&c);
    return st;
}

kiln_status kiln_checkpoint_save(const char *path, const kiln_ckpt_tensor *tensors, int n,
                                 const char *const *metadata) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: out of host memory", path);
    kiln_status st = KILN_OK;
    if (metadata && metadata[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && metadata[i] && metadata[i + 1]; i += 2)
            cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !st; i++) {
        const kiln_tensor *t = tensors[i].tensor;
        const char *tag = dtype_tag(t->dtype);
        if (!tag || !t->buffer || !kiln_tensor_is_contiguous(t)) {
            st = kiln_error(
                KILN_INVALID_ARGUMENT,
                "checkpoint save: tensor '%s' is not contiguous storage of a known dtype",
                tensors[i].name);
            break;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, tensors[i].name)) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "checkpoint save: tensor name '%s' given twice",
                            tensors[i].name);
            break;
        }
        cJSON *e = cJSON_AddObjectToObject(root, tensors[i].name);
        cJSON_AddStringToObject(e, "dtype", tag);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        uint64_t bytes = (uint64_t)kiln_tensor_nelements(t) * kiln_dtype_size(t->dtype);
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *text = st ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (st) return st;
    if (!text) return kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: out of host memory", path);
    /* Pad the header with spaces so the data starts 8-byte aligned, as safetensors does. */
    size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    kiln_atomic_file *af = NULL;
    st = kiln_atomic_open(path, &af);
    if (!st) st = kiln_atomic_write(af, len8, 8);
    if (!st) st = kiln_atomic_write(af, text, hlen);
    if (!st && padded > hlen) st = kiln_atomic_write(af, "        ", padded - hlen);
    free(text);
    for (int i = 0; i < n && !st; i++) {
        const kiln_tensor *t = tensors[i].tensor;
        size_t bytes = (size_t)kiln_tensor_nelements(t) * kiln_dtype_size(t->dtype);
        void *h = malloc(bytes ? bytes : 1);
        if (!h) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "checkpoint %s: %zu bytes for '%s'", path, bytes,
                            tensors[i].name);
            break;
        }
        st = kiln_tensor_get(t, h, bytes);
        if (!st) st = kiln_atomic_write(af, h, bytes);
        free(h);
    }
    if (st) {
        kiln_atomic_abort(af);
        return st;
    }
    return kiln_atomic_commit(af);
}
