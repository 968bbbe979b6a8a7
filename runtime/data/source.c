/* Sources: class-folder JPEG directories, IDX files (gzipped or not) and tar shards of
   KEY.jpg + KEY.cls members (the webdataset convention) with classes.txt beside them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "backend-impl.h"
#include "data/data-impl.h"

void kiln_dataset_options_init(kiln_dataset_options *o) {
    memset(o, 0, sizeof(*o));
    o->split = KILN_SPLIT_ALL;
    o->val_fraction = 0.2;
    o->split_seed = 1337;
}

static kiln_status add_name(kiln_dataset_t ds, const char *name, uint32_t *off) {
    size_t len = strlen(name) + 1;
    if (ds->names_len + len > ds->names_cap) {
        size_t cap = ds->names_cap ? ds->names_cap * 2 : 65536;
        while (cap < ds->names_len + len) cap *= 2;
        char *p = realloc(ds->names, cap);
        if (!p) return kiln_error(KILN_OUT_OF_MEMORY, "dataset names");
        ds->names = p;
        ds->names_cap = cap;
    }
    if (ds->names_len + len > UINT32_MAX) return kiln_error(KILN_OUT_OF_MEMORY, "too many names");
    memcpy(ds->names + ds->names_len, name, len);
    *off = (uint32_t)ds->names_len;
    ds->names_len += len;
    return KILN_OK;
}

static kiln_status add_sample(kiln_dataset_t ds, const char *name, uint32_t shard, uint64_t off,
                              uint64_t size, int32_t label) {
    if (ds->count == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 1024;
        kiln_sample *p = realloc(ds->samples, cap * sizeof(*p));
        if (!p) return kiln_error(KILN_OUT_OF_MEMORY, "dataset samples");
        ds->samples = p;
        ds->cap = cap;
    }
    kiln_sample *s = &ds->samples[ds->count];
    kiln_status st = add_name(ds, name, &s->name);
    if (st != KILN_OK) return st;
    s->shard = shard;
    s->off = off;
    s->size = size;
    s->label = label;
    ds->count++;
    return KILN_OK;
}

static kiln_status add_class(kiln_dataset_t ds, const char *name) {
    char **p = realloc(ds->classes, (size_t)(ds->nclasses + 1) * sizeof(*p));
    if (!p) return kiln_error(KILN_OUT_OF_MEMORY, "classes");
    ds->classes = p;
    if (!(p[ds->nclasses] = strdup(name))) return kiln_error(KILN_OUT_OF_MEMORY, "classes");
    ds->nclasses++;
    return KILN_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entries of a directory (without . and ..); *out is malloc'ed. */
static kiln_status list_dir(const char *path, char ***out, int *n) {
    DIR *d = opendir(path);
    if (!d) return kiln_error(KILN_IO, "cannot open directory %s: %s", path, strerror(errno));
    char **v = NULL;
    int cnt = 0, cap = 0;
    struct dirent *e;
    kiln_status st = KILN_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            char **q = realloc(v, (size_t)cap * sizeof(*q));
            if (!q) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "listing %s", path);
                break;
            }
            v = q;
        }
        if (!(v[cnt] = strdup(e->d_name))) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "listing %s", path);
            break;
        }
        cnt++;
    }
    closedir(d);
    if (st == KILN_OK && cnt) qsort(v, (size_t)cnt, sizeof(*v), cmp_str); /* v: NULL if empty */
    *out = v;
    *n = cnt;
    return st;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

static int has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), e = strlen(ext);
    return n > e && !strcasecmp(name + n - e, ext);
}

static kiln_status scan_class(kiln_dataset_t ds, const char *rel, int label, int depth) {
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", ds->root, rel);
    char **v;
    int n;
    kiln_status st = list_dir(path, &v, &n);
    if (st != KILN_OK) return st;
    for (int i = 0; i < n && st == KILN_OK; i++) {
        char r[4096];
        if ((size_t)snprintf(r, sizeof(r), "%s/%s", rel, v[i]) >= sizeof(r)) continue;
        snprintf(path, sizeof(path), "%s/%s", ds->root, r);
        if (is_dir(path)) {
            if (depth < 8) st = scan_class(ds, r, label, depth + 1);
        } else if (has_ext(v[i], ".jpg") || has_ext(v[i], ".jpeg")) {
            st = add_sample(ds, r, 0, 0, 0, label);
        }
    }
    free_list(v, n);
    return st;
}

static kiln_status open_jpeg_dir(kiln_dataset_t ds, char **v, int n) {
    ds->kind = KILN_SRC_JPEG_DIR;
    kiln_status st = KILN_OK;
    for (int i = 0; i < n && st == KILN_OK; i++) {
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", ds->root, v[i]);
        if (!is_dir(path)) continue;
        st = add_class(ds, v[i]);
        if (st == KILN_OK) st = scan_class(ds, v[i], ds->nclasses - 1, 0);
    }
    if (st == KILN_OK && ds->nclasses == 0)
        st = kiln_error(KILN_NOT_FOUND, "%s has no class folders (expected DIR/CLASS/*.jpg)",
                        ds->root);
    return st;
}

/* ---- tar ---- */

static uint64_t octal(const char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n && p[i]; i++) {
        if (p[i] == ' ') continue;
        if (p[i] < '0' || p[i] > '7') break;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    return v;
}

static kiln_status index_shard(kiln_dataset_t ds, int fd, uint32_t shard, const char *sname) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return kiln_error(KILN_IO, "%s: %s", sname, strerror(errno));
    uint64_t fsize = (uint64_t)sb.st_size, pos = 0;
    char h[512];
    /* A sample's .jpg and .cls are adjacent members in either order (`kiln data pack` writes
       .jpg first; webdataset writers often sort .cls first). */
    char jkey[300] = "", ckey[300] = "";
    uint64_t joff = 0, jsize = 0;
    long cls = -1;
    while (pos + 512 <= fsize) {
        if (pread(fd, h, 512, (off_t)pos) != 512)
            return kiln_error(KILN_IO, "%s: read failed at %llu", sname, (unsigned long long)pos);
        if (h[0] == 0) break; /* end-of-archive blocks */
        char name[300];
        snprintf(name, sizeof(name), "%.155s%s%.100s", h[345] ? h + 345 : "", h[345] ? "/" : "", h);
        uint64_t size = octal(h + 124, 12);
        uint64_t data = pos + 512;
        if (data + size > fsize)
            return kiln_error(KILN_CORRUPT, "%s: member %s runs past the end", sname, name);
        char type = h[156];
        char *dot = strrchr(name, '.');
        if ((type == '0' || type == 0) && dot) {
            *dot = 0; /* name is now the key, dot + 1 the extension */
            if (!strcasecmp(dot + 1, "jpg") || !strcasecmp(dot + 1, "jpeg")) {
                snprintf(jkey, sizeof(jkey), "%s", name);
                joff = data;
                jsize = size;
            } else if (!strcasecmp(dot + 1, "cls")) {
                char txt[32] = "";
                size_t k = size < sizeof(txt) - 1 ? size : sizeof(txt) - 1;
                if (pread(fd, txt, k, (off_t)data) != (ssize_t)k)
                    return kiln_error(KILN_IO, "%s: read failed", sname);
                txt[k] = 0;
                char *end;
                cls = strtol(txt, &end, 10);
                if (end == txt || cls < 0 || cls > 1000000)
                    return kiln_error(KILN_CORRUPT, "%s: bad class in %s.cls", sname, name);
                snprintf(ckey, sizeof(ckey), "%s", name);
            }
            if (jkey[0] && !strcmp(jkey, ckey)) {
                char full[700];
                snprintf(full, sizeof(full), "%s:%s.jpg", sname, jkey);
                kiln_status st = add_sample(ds, full, shard, joff, jsize, (int32_t)cls);
                if (st != KILN_OK) return st;
                while (ds->nclasses <= cls) {
                    char cn[32];
                    snprintf(cn, sizeof(cn), "%d", ds->nclasses);
                    st = add_class(ds, cn);
                    if (st != KILN_OK) return st;
                }
                jkey[0] = ckey[0] = 0;
            }
        }
        pos = data + (size + 511) / 512 * 512;
    }
    return KILN_OK;
}

static kiln_status open_tar(kiln_dataset_t ds, char **files, int n) {
    ds->kind = KILN_SRC_TAR;
    ds->shard_fd = calloc((size_t)n, sizeof(int));
    ds->shard_names = calloc((size_t)n, sizeof(char *));
    if (!ds->shard_fd || !ds->shard_names) return kiln_error(KILN_OUT_OF_MEMORY, "shards");
    for (int i = 0; i < n; i++) ds->shard_fd[i] = -1;
    ds->nshards = n;
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", ds->root, files[i]);
        ds->shard_names[i] = strdup(files[i]);
        if (!ds->shard_names[i]) return kiln_error(KILN_OUT_OF_MEMORY, "shards");
        ds->shard_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
        if (ds->shard_fd[i] < 0) return kiln_error(KILN_IO, "%s: %s", path, strerror(errno));
        kiln_status st = index_shard(ds, ds->shard_fd[i], (uint32_t)i, files[i]);
        if (st != KILN_OK) return st;
    }
    /* Class names from classes.txt when present (one per line, in class order). */
    char path[8192];
    snprintf(path, sizeof(path), "%s/classes.txt", ds->root);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[1024];
        for (int c = 0; fgets(line, sizeof(line), f); c++) {
            line[strcspn(line, "\r\n")] = 0;
            if (c < ds->nclasses) {
                char *dup = strdup(line);
                if (dup) free(ds->classes[c]), ds->classes[c] = dup;
            } else if (add_class(ds, line) != KILN_OK) {
                break;
            }
        }
        fclose(f);
    }
    return KILN_OK;
}

/* ---- IDX ---- */

static kiln_status read_gz(const char *path, uint8_t **out, size_t *n, size_t cap_bytes) {
    gzFile g = gzopen(path, "rb");
    if (!g) return kiln_error(KILN_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    kiln_status st = KILN_OK;
    for (;;) {
        if (!buf) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "reading %s", path);
            break;
        }
        if (len == cap) {
            if (cap >= cap_bytes) {
                st = kiln_error(KILN_CORRUPT, "%s: larger than %zu bytes", path, cap_bytes);
                break;
            }
            uint8_t *q = realloc(buf, cap * 2);
            if (!q) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "reading %s", path);
                break;
            }
            buf = q;
            cap *= 2;
        }
        unsigned want = (unsigned)((cap - len) > (1u << 30) ? (1u << 30) : (cap - len));
        int r = gzread(g, buf + len, want);
        if (r < 0) {
            int e;
            st = kiln_error(KILN_CORRUPT, "%s: %s", path, gzerror(g, &e));
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(g);
    if (st != KILN_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *n = len;
    return KILN_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static kiln_status open_idx(kiln_dataset_t ds, const char *path, const char *labels) {
    ds->kind = KILN_SRC_IDX;
    char lpath[4096];
    if (!labels) {
        const char *b = strstr(path, "images-idx3");
        if (!b)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "%s: cannot derive the labels file name (no 'images-idx3'); "
                              "give labels_path",
                              path);
        snprintf(lpath, sizeof(lpath), "%.*slabels-idx1%s", (int)(b - path), path,
                 b + strlen("images-idx3"));
        labels = lpath;
    }
    uint8_t *img = NULL, *lab = NULL;
    size_t ni = 0, nl = 0;
    kiln_status st = read_gz(path, &img, &ni, (size_t)4 << 30);
    if (st == KILN_OK) st = read_gz(labels, &lab, &nl, (size_t)1 << 30);
    if (st != KILN_OK) goto done;
    if (ni < 16 || be32(img) != 0x00000803) {
        st = kiln_error(KILN_CORRUPT, "%s: not an IDX3 ubyte images file (magic %08x)", path,
                        ni >= 4 ? be32(img) : 0);
        goto done;
    }
    if (nl < 8 || be32(lab) != 0x00000801) {
        st = kiln_error(KILN_CORRUPT, "%s: not an IDX1 ubyte labels file (magic %08x)", labels,
                        nl >= 4 ? be32(lab) : 0);
        goto done;
    }
    uint64_t cnt = be32(img + 4), h = be32(img + 8), w = be32(img + 12);
    if (h == 0 || w == 0 || h > 4096 || w > 4096 || 16 + cnt * h * w != ni) {
        st = kiln_error(KILN_CORRUPT,
                        "%s: header says %llu images of %llux%llu but the file has "
                        "%zu bytes",
                        path, (unsigned long long)cnt, (unsigned long long)h, (unsigned long long)w,
                        ni);
        goto done;
    }
    if (be32(lab + 4) != cnt || 8 + cnt != nl) {
        st = kiln_error(KILN_CORRUPT, "%s: %u labels (%zu bytes) for %llu images in %s", labels,
                        be32(lab + 4), nl, (unsigned long long)cnt, path);
        goto done;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int maxl = -1;
    for (uint64_t i = 0; i < cnt && st == KILN_OK; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%s[%llu]", base, (unsigned long long)i);
        st = add_sample(ds, name, 0, 16 + i * h * w, h * w, lab[8 + i]);
        if (lab[8 + i] > maxl) maxl = lab[8 + i];
    }
    for (int c = 0; c <= maxl && st == KILN_OK; c++) {
        char cn[16];
        snprintf(cn, sizeof(cn), "%d", c);
        st = add_class(ds, cn);
    }
    ds->idx_pixels = img;
    img = NULL;
    ds->idx_w = (int)w;
    ds->idx_h = (int)h;
done:
    free(img);
    free(lab);
    return st;
}

/* ---- split and open ---- */

static void apply_split(kiln_dataset_t ds) {
    if (ds->opt.split == KILN_SPLIT_ALL) return;
    size_t k = 0;
    for (size_t i = 0; i < ds->count; i++) {
        const char *nm = ds->names + ds->samples[i].name;
        uint64_t h = kiln_mix64(kiln_hash64(KILN_HASH_INIT, nm, strlen(nm)) ^ ds->opt.split_seed);
        int val = (double)(h >> 11) * (1.0 / 9007199254740992.0) < ds->opt.val_fraction;
        if (val == (ds->opt.split == KILN_SPLIT_VAL)) ds->samples[k++] = ds->samples[i];
    }
    ds->count = k;
}

kiln_status kiln_dataset_open(const kiln_dataset_options *o, kiln_dataset_t *out) {
    *out = NULL;
    if (!o || !o->path || !o->path[0]) return kiln_error(KILN_INVALID_ARGUMENT, "no data path");
    if (o->val_fraction < 0 || o->val_fraction > 1)
        return kiln_error(KILN_INVALID_ARGUMENT, "val_fraction %g outside [0, 1]", o->val_fraction);
    kiln_dataset_t ds = calloc(1, sizeof(*ds));
    if (!ds) return kiln_error(KILN_OUT_OF_MEMORY, "dataset");
    ds->opt = *o;
    ds->opt.path = NULL;
    ds->opt.labels_path = NULL;
    if (!ds->opt.max_file_bytes) ds->opt.max_file_bytes = (size_t)64 << 20;
    if (!ds->opt.max_pixels) ds->opt.max_pixels = 100000000ULL;
    if (!ds->opt.max_side) ds->opt.max_side = 32768;
    snprintf(ds->root, sizeof(ds->root), "%s", o->path);
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/') ds->root[--rl] = 0;
    kiln_status st;
    struct stat sb;
    if (stat(ds->root, &sb) != 0) {
        st = kiln_error(KILN_NOT_FOUND, "%s: %s", ds->root, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char **v;
        int n;
        st = list_dir(ds->root, &v, &n);
        if (st == KILN_OK) {
            int tars = 0;
            for (int i = 0; i < n; i++) tars += has_ext(v[i], ".tar");
            if (tars) {
                int k = 0;
                for (int i = 0; i < n; i++) {
                    if (has_ext(v[i], ".tar"))
                        v[k++] = v[i];
                    else
                        free(v[i]);
                }
                n = k;
                st = open_tar(ds, v, n);
            } else {
                st = open_jpeg_dir(ds, v, n);
            }
            free_list(v, n);
        }
    } else if (has_ext(ds->root, ".tar")) {
        char *slash = strrchr(ds->root, '/');
        char file[4096];
        if (slash) {
            snprintf(file, sizeof(file), "%s", slash + 1);
            *slash = 0;
        } else {
            snprintf(file, sizeof(file), "%s", ds->root);
            snprintf(ds->root, sizeof(ds->root), ".");
        }
        char *one[1] = {file};
        st = open_tar(ds, one, 1);
    } else {
        st = open_idx(ds, o->path, o->labels_path);
    }
    if (st == KILN_OK) {
        apply_split(ds);
        if (ds->count == 0)
            st = kiln_error(KILN_NOT_FOUND, "%s: no samples%s", o->path,
                            o->split != KILN_SPLIT_ALL ? " in this split" : "");
    }
    if (st != KILN_OK) {
        kiln_dataset_free(ds);
        return st;
    }
    *out = ds;
    return KILN_OK;
}

void kiln_dataset_free(kiln_dataset_t ds) {
    if (!ds) return;
    for (int i = 0; i < ds->nclasses; i++) free(ds->classes[i]);
    free(ds->classes);
    for (int i = 0; i < ds->nshards; i++) {
        if (ds->shard_fd && ds->shard_fd[i] >= 0) close(ds->shard_fd[i]);
        if (ds->shard_names) free(ds->shard_names[i]);
    }
    free(ds->shard_fd);
    free(ds->shard_names);
    free(ds->samples);
    free(ds->names);
    free(ds->idx_pixels);
    free(ds);
}

size_t kiln_dataset_size(kiln_dataset_t ds) {
    return ds->count;
}
int kiln_dataset_num_classes(kiln_dataset_t ds) {
    return ds->nclasses;
}
const char *kiln_dataset_class_name(kiln_dataset_t ds, int cls) {
    return cls >= 0 && cls < ds->nclasses ? ds->classes[cls] : "?";
}
int kiln_dataset_label(kiln_dataset_t ds, size_t i) {
    return ds->samples[i].label;
}
const char *kiln_dataset_sample_name(kiln_dataset_t ds, size_t i) {
    return ds->names + ds->samples[i].name;
}
const char *kiln_dataset_kind(kiln_dataset_t ds) {
    return ds->kind == KILN_SRC_IDX ? "idx" : ds->kind == KILN_SRC_TAR ? "tar" : "jpeg-dir";
}
int kiln_dataset_channels(kiln_dataset_t ds) {
    return ds->kind == KILN_SRC_IDX ? 1 : 3;
}

kiln_status kiln_dataset_read_bytes(kiln_dataset_t ds, size_t i, uint8_t **buf, size_t *cap,
                                    size_t *n) {
    const kiln_sample *s = &ds->samples[i];
    const char *name = ds->names + s->name;
    int fd = -1;
    uint64_t off = 0, size;
    if (ds->kind == KILN_SRC_TAR) {
        fd = ds->shard_fd[s->shard];
        off = s->off;
        size = s->size;
    } else {
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", ds->root, name);
        /* O_NONBLOCK: opening a FIFO named like an image would otherwise wait for a writer
           forever and stall the pipeline. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) return kiln_error(KILN_IO, "cannot open %s: %s", path, strerror(errno));
        struct stat sb;
        int bad = fstat(fd, &sb) != 0 ? errno : !S_ISREG(sb.st_mode) ? -1 : 0;
        if (bad) {
            close(fd);
            return kiln_error(KILN_IO, "%s: %s", path,
                              bad > 0 ? strerror(bad) : "not a regular file");
        }
        size = (uint64_t)sb.st_size;
    }
    kiln_status st = KILN_OK;
    if (size > ds->opt.max_file_bytes) {
        st = kiln_error(KILN_CORRUPT, "%llu bytes (limit %zu)", (unsigned long long)size,
                        ds->opt.max_file_bytes);
    } else if (size + 1 > *cap) {
        uint8_t *p = realloc(*buf, (size_t)size + 1);
        if (!p)
            st = kiln_error(KILN_OUT_OF_MEMORY, "%llu bytes", (unsigned long long)size);
        else
            *buf = p, *cap = (size_t)size + 1;
    }
    size_t got = 0;
    while (st == KILN_OK && got < size) {
        ssize_t r = pread(fd, *buf + got, (size_t)size - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            st = kiln_error(KILN_IO, "read failed: %s", r < 0 ? strerror(errno) : "EOF");
        else
            got += (size_t)r;
    }
    if (ds->kind != KILN_SRC_TAR) close(fd);
    *n = got;
    return st;
}

static kiln_status named(kiln_dataset_t ds, size_t i, kiln_status st) {
    if (st != KILN_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", kiln_last_error());
        kiln_error(st, "%s/%s: %s", ds->root, kiln_dataset_sample_name(ds, i), msg);
    }
    return st;
}

kiln_status kiln_dataset_decode(kiln_dataset_t ds, size_t i, int channels, uint8_t **pixels,
                                int *width, int *height) {
    if (i >= ds->count) return kiln_error(KILN_INVALID_ARGUMENT, "sample %zu of %zu", i, ds->count);
    if (channels != 1 && channels != 3)
        return kiln_error(KILN_INVALID_ARGUMENT, "channels %d (1 or 3)", channels);
    if (ds->kind == KILN_SRC_IDX) {
        size_t np = (size_t)ds->idx_w * ds->idx_h;
        *pixels = malloc(np * (size_t)channels);
        if (!*pixels) return kiln_error(KILN_OUT_OF_MEMORY, "decode");
        kiln_convert_channels(ds->idx_pixels + ds->samples[i].off, (int)np, 1, *pixels, channels);
        *width = ds->idx_w;
        *height = ds->idx_h;
        return KILN_OK;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    kiln_decoder *d = NULL;
    kiln_decode_limits lim = {ds->opt.max_pixels, ds->opt.max_side, 0, 0};
    kiln_jpeg_info info;
    kiln_decoded dec;
    kiln_status st = kiln_dataset_read_bytes(ds, i, &buf, &cap, &n);
    if (st == KILN_OK) st = kiln_decoder_create(&d);
    if (st == KILN_OK) st = kiln_jpeg_header(d, buf, n, &lim, &info);
    if (st == KILN_OK)
        st = kiln_jpeg_decode_box(d, buf, n, &info, &lim, channels, 0, 0, info.owidth, info.oheight,
                                  0, 0, &dec);
    if (st == KILN_OK) {
        size_t bytes = (size_t)dec.w * dec.h * (size_t)channels;
        *pixels = malloc(bytes);
        if (!*pixels)
            st = kiln_error(KILN_OUT_OF_MEMORY, "decode");
        else
            memcpy(*pixels, dec.pixels, bytes), *width = dec.w, *height = dec.h;
    }
    kiln_decoder_free(d);
    free(buf);
    return named(ds, i, st);
}

struct kiln_dataset_scan {
    kiln_dataset_t ds;
    kiln_decoder *d; /* NULL for IDX */
    kiln_decode_limits lim;
    uint8_t *buf;
    size_t cap;
};

kiln_status kiln_dataset_scan_create(kiln_dataset_t ds, int accept_warnings,
                                     kiln_dataset_scan_t *out) {
    *out = NULL;
    kiln_dataset_scan_t s = calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_OUT_OF_MEMORY, "dataset scan");
    s->ds = ds;
    s->lim = (kiln_decode_limits){ds->opt.max_pixels, ds->opt.max_side, accept_warnings, 1};
    kiln_status st = ds->kind != KILN_SRC_IDX ? kiln_decoder_create(&s->d) : KILN_OK;
    if (st != KILN_OK) {
        free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

kiln_status kiln_dataset_scan_sample(kiln_dataset_scan_t s, size_t i, int *width, int *height) {
    if (!s->d) {
        *width = s->ds->idx_w, *height = s->ds->idx_h;
        return KILN_OK;
    }
    size_t len = 0;
    kiln_jpeg_info info;
    kiln_decoded dec;
    kiln_status st = kiln_dataset_read_bytes(s->ds, i, &s->buf, &s->cap, &len);
    if (st == KILN_OK) st = kiln_jpeg_header(s->d, s->buf, len, &s->lim, &info);
    if (st == KILN_OK)
        st = kiln_jpeg_decode_box(s->d, s->buf, len, &info, &s->lim, 3, 0, 0, info.owidth,
                                  info.oheight, 1, 1, &dec);
    if (st == KILN_OK) *width = info.owidth, *height = info.oheight;
    return st;
}

void kiln_dataset_scan_free(kiln_dataset_scan_t s) {
    if (!s) return;
    kiln_decoder_free(s->d);
    free(s->buf);
    free(s);
}
