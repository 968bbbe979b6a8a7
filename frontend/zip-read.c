/* One member of a zip archive, on zlib: the end-of-central-directory record (zip64 when a
   field overflows), the central directory entry of the member, its local header, then the
   stored or raw-deflated bytes, checked against the directory's size and CRC-32. Every offset
   and size is checked against the file before it is used, so a truncated or hostile archive
   is an error naming the file, never a read past the end. A .keras model needs one small
   member read, which this does on zlib (already a dependency) without adding libzip. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

#include "../runtime/backend-impl.h"
#include "zip-impl.h"

#define EOCD_SIG      0x06054b50u
#define Z64_LOC_SIG   0x07064b50u
#define Z64_EOCD_SIG  0x06064b50u
#define CDIR_SIG      0x02014b50u
#define LOCAL_SIG     0x04034b50u
#define EOCD_LEN      22
#define MAX_COMMENT   65535
#define CDIR_LIMIT    (64u << 20) /* a directory this large is not a model archive */
#define CDIR_ENTRY    46
#define LOCAL_HDR_LEN 30

static uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

typedef struct zip_file {
    FILE *f;
    const char *path;
    uint64_t size;
} zip_file;

static int read_at(zip_file *z, uint64_t off, void *buf, size_t n) {
    if (off > z->size || n > z->size - off) return -1;
    if (fseeko(z->f, (off_t)off, SEEK_SET)) return -1;
    return fread(buf, 1, n, z->f) == n ? 0 : -1;
}

static kiln_status bad(const zip_file *z, const char *what) {
    return kiln_error(KILN_INVALID_ARGUMENT, "%s: not a valid zip archive: %s", z->path, what);
}

/* The central directory's offset, size and entry count. */
static kiln_status find_directory(zip_file *z, uint64_t *off, uint64_t *size, uint64_t *count) {
    size_t tail = z->size < EOCD_LEN + MAX_COMMENT ? (size_t)z->size : EOCD_LEN + MAX_COMMENT;
    if (tail < EOCD_LEN) return bad(z, "too short");
    unsigned char *buf = malloc(tail);
    if (!buf) return kiln_error(KILN_OUT_OF_MEMORY, "%s: out of memory", z->path);
    if (read_at(z, z->size - tail, buf, tail)) {
        free(buf);
        return kiln_error(KILN_IO, "%s: read error", z->path);
    }
    /* The record is followed only by its comment: the last signature whose comment fits. */
    long e = -1;
    for (long i = (long)(tail - EOCD_LEN); i >= 0 && e < 0; i--)
        if (rd32(buf + i) == EOCD_SIG && (size_t)i + EOCD_LEN + rd16(buf + i + 20) <= tail) e = i;
    if (e < 0) {
        free(buf);
        return bad(z, "no end-of-central-directory record");
    }
    const unsigned char *r = buf + e;
    uint64_t eocd = z->size - tail + (uint64_t)e;
    unsigned disk = rd16(r + 4), cd_disk = rd16(r + 6);
    *count = rd16(r + 10);
    *size = rd32(r + 12);
    *off = rd32(r + 16);
    free(buf);
    if (*count == 0xFFFF || *size == 0xFFFFFFFFu || *off == 0xFFFFFFFFu) {
        unsigned char loc[20], z64[56];
        if (eocd < sizeof loc || read_at(z, eocd - sizeof loc, loc, sizeof loc) ||
            rd32(loc) != Z64_LOC_SIG)
            return bad(z, "a zip64 archive without its zip64 locator");
        uint64_t z64_off = rd64(loc + 8);
        if (read_at(z, z64_off, z64, sizeof z64) || rd32(z64) != Z64_EOCD_SIG)
            return bad(z, "the zip64 end-of-central-directory record is missing");
        disk = (unsigned)rd32(z64 + 16);
        cd_disk = (unsigned)rd32(z64 + 20);
        *count = rd64(z64 + 32);
        *size = rd64(z64 + 40);
        *off = rd64(z64 + 48);
        eocd = z64_off;
    }
    if (disk != 0 || cd_disk != 0) return bad(z, "multi-disk archives are not supported");
    if (*off > eocd || *size > eocd - *off) return bad(z, "the central directory lies outside it");
    if (*size > CDIR_LIMIT) return bad(z, "a central directory over 64 MiB");
    return KILN_OK;
}

typedef struct zip_entry {
    unsigned flags, method;
    uint32_t crc;
    uint64_t csize, usize, local;
} zip_entry;

/* Sizes and offset that overflow 32 bits are in the zip64 extra field (id 1), in this order,
   only for the fields that hold 0xFFFFFFFF. */
static int zip64_extra(const unsigned char *x, size_t n, zip_entry *en, int need_u, int need_c,
                       int need_l) {
    while (n >= 4) {
        unsigned id = rd16(x), len = rd16(x + 2);
        if ((size_t)len + 4 > n) return -1;
        if (id == 1) {
            const unsigned char *p = x + 4;
            size_t left = len;
            uint64_t *field[3] = {&en->usize, &en->csize, &en->local};
            int need[3] = {need_u, need_c, need_l};
            for (int k = 0; k < 3; k++) {
                if (!need[k]) continue;
                if (left < 8) return -1;
                *field[k] = rd64(p);
                p += 8;
                left -= 8;
            }
            return 0;
        }
        x += 4 + len;
        n -= 4 + (size_t)len;
    }
    return need_u || need_c || need_l ? -1 : 0;
}

static kiln_status find_entry(zip_file *z, const unsigned char *cd, uint64_t cd_size,
                              uint64_t count, const char *name, zip_entry *en) {
    size_t want = strlen(name), p = 0;
    char names[512] = "";
    size_t nl = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (p + CDIR_ENTRY > cd_size || rd32(cd + p) != CDIR_SIG)
            return bad(z, "a central directory entry is truncated or malformed");
        const unsigned char *e = cd + p;
        size_t n = rd16(e + 28), x = rd16(e + 30), c = rd16(e + 32);
        if (p + CDIR_ENTRY + n + x + c > cd_size)
            return bad(z, "a central directory entry runs past the directory");
        const char *ename = (const char *)e + CDIR_ENTRY;
        if (n == want && !memcmp(ename, name, n)) {
            en->flags = rd16(e + 8);
            en->method = rd16(e + 10);
            en->crc = rd32(e + 16);
            en->csize = rd32(e + 20);
            en->usize = rd32(e + 24);
            en->local = rd32(e + 42);
            if (zip64_extra(e + CDIR_ENTRY + n, x, en, en->usize == 0xFFFFFFFFu,
                            en->csize == 0xFFFFFFFFu, en->local == 0xFFFFFFFFu))
                return bad(z, "a malformed zip64 extra field");
            return KILN_OK;
        }
        if (nl < sizeof names - 1)
            nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%.*s", i ? ", " : "",
                                   (int)(n < 128 ? n : 128), ename);
        p += CDIR_ENTRY + n + x + c;
    }
    return kiln_error(KILN_NOT_FOUND, "%s: the archive has no '%s' (it holds: %s)", z->path, name,
                      count ? names : "nothing");
}

static kiln_status read_entry(zip_file *z, const char *name, const zip_entry *en, size_t limit,
                              char **data, size_t *len) {
    if (en->flags & 1)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: '%s' is encrypted", z->path, name);
    if (en->method != 0 && en->method != 8)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%s: '%s' uses compression method %u (only stored and deflate are read)",
                          z->path, name, en->method);
    if (en->usize > limit)
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: '%s' is %llu bytes, more than the %zu read",
                          z->path, name, (unsigned long long)en->usize, limit);
    /* Deflate never grows data by more than 5 bytes per 16 KiB block. */
    if (en->method == 0 ? en->csize != en->usize : en->csize > en->usize + en->usize / 1024 + 64)
        return bad(z, "a member's compressed size does not fit its size");
    unsigned char h[LOCAL_HDR_LEN];
    if (read_at(z, en->local, h, sizeof h) || rd32(h) != LOCAL_SIG)
        return bad(z, "a member's local header is missing");
    uint64_t at = en->local + LOCAL_HDR_LEN + rd16(h + 26) + rd16(h + 28);
    char *out = malloc((size_t)en->usize + 1);
    unsigned char *in = en->method == 8 ? malloc(en->csize ? (size_t)en->csize : 1) : NULL;
    if (!out || (en->method == 8 && !in)) {
        free(out);
        free(in);
        return kiln_error(KILN_OUT_OF_MEMORY, "%s: out of memory", z->path);
    }
    kiln_status st = KILN_OK;
    if (read_at(z, at, en->method == 8 ? (void *)in : (void *)out, (size_t)en->csize)) {
        st = bad(z, "a member runs past the end of the file (truncated?)");
    } else if (en->method == 8) {
        z_stream s;
        memset(&s, 0, sizeof s);
        if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "%s: zlib: cannot start inflating", z->path);
        } else {
            s.next_in = in;
            s.avail_in = (uInt)en->csize;
            s.next_out = (Bytef *)out;
            s.avail_out = (uInt)en->usize + 1; /* room for one byte too many: caught below */
            int r = inflate(&s, Z_FINISH);
            if (r != Z_STREAM_END || s.total_out != en->usize)
                st = kiln_error(KILN_INVALID_ARGUMENT,
                                "%s: '%s' does not inflate to its recorded size (%s)", z->path,
                                name, s.msg ? s.msg : "corrupt data");
            inflateEnd(&s);
        }
    }
    free(in);
    if (!st && crc32(0L, (const Bytef *)out, (uInt)en->usize) != en->crc)
        st = kiln_error(KILN_INVALID_ARGUMENT, "%s: '%s' fails its CRC-32 check (corrupt file)",
                        z->path, name);
    if (st) {
        free(out);
        return st;
    }
    out[en->usize] = '\0';
    *data = out;
    *len = (size_t)en->usize;
    return KILN_OK;
}

kiln_status kiln_zip_read(const char *path, const char *name, size_t limit, char **data,
                          size_t *len) {
    *data = NULL;
    *len = 0;
    zip_file z = {fopen(path, "rb"), path, 0};
    if (!z.f) return kiln_error(KILN_IO, "%s: cannot open: %s", path, strerror(errno));
    kiln_status st = KILN_OK;
    off_t end = -1;
    if (fseeko(z.f, 0, SEEK_END) || (end = ftello(z.f)) < 0)
        st = kiln_error(KILN_IO, "%s: cannot seek: %s", path, strerror(errno));
    z.size = end > 0 ? (uint64_t)end : 0;
    uint64_t off = 0, size = 0, count = 0;
    if (!st) st = find_directory(&z, &off, &size, &count);
    unsigned char *cd = NULL;
    if (!st && !(cd = malloc(size ? (size_t)size : 1)))
        st = kiln_error(KILN_OUT_OF_MEMORY, "%s: out of memory", path);
    if (!st && read_at(&z, off, cd, (size_t)size)) st = kiln_error(KILN_IO, "%s: read error", path);
    zip_entry en = {0};
    if (!st) st = find_entry(&z, cd, size, count, name, &en);
    free(cd);
    if (!st) st = read_entry(&z, name, &en, limit, data, len);
    fclose(z.f);
    return st;
}
