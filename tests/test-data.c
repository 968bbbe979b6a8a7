/* The data pipeline: JPEG variants and broken files generated here with TurboJPEG, IDX files,
   tar shards, class mapping, validation split, determinism across worker counts and resume,
   shuffling and sharding coverage, augmentation geometry, and the uploader. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <jpeglib.h>
#include <unistd.h>
#include <zlib.h>

#include "backend-impl.h"
#include "data/data-impl.h"
#include "kiln/data.h"
#include "check.h"
#include "kiln/kiln.h"

static char root[256];

static int has(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot write %s\n", path);
        exit(1);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void mkdirs(const char *rel) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    mkdir(p, 0755);
}

/* A w x h RGB test picture: smooth gradients plus a seed-dependent pattern. */
static uint8_t *picture(int w, int h, int seed) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            q[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            q[2] = (uint8_t)(128 + 100 * sin((x + y + seed * 7) / 9.0));
        }
    return p;
}

/* Encodes with TurboJPEG; pf TJPF_RGB/GRAY/CMYK, subsampling TJSAMP_*, progressive flag. */
static uint8_t *encode_ss(const uint8_t *px, int w, int h, int pf, int ss, int progressive,
                          size_t *n) {
    tjhandle c = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long len = 0;
    if (pf == TJPF_GRAY) ss = TJSAMP_GRAY;
    int flags = progressive ? TJFLAG_PROGRESSIVE : 0;
    if (tjCompress2(c, px, w, 0, h, pf, &buf, &len, ss, 92, flags) != 0) {
        printf("encode failed: %s\n", tjGetErrorStr2(c));
        exit(1);
    }
    uint8_t *out = malloc(len);
    memcpy(out, buf, len);
    *n = len;
    tjFree(buf);
    tjDestroy(c);
    return out;
}

static uint8_t *encode(const uint8_t *px, int w, int h, int pf, int progressive, size_t *n) {
    return encode_ss(px, w, h, pf, TJSAMP_420, progressive, n);
}

static void write_jpeg(const char *rel, int w, int h, int seed) {
    uint8_t *px = picture(w, h, seed);
    size_t n;
    uint8_t *j = encode(px, w, h, TJPF_RGB, 0, &n);
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    write_file(p, j, n);
    free(px);
    free(j);
}

/* Inserts an APP1 Exif segment with the orientation tag right after SOI. */
static uint8_t *with_exif(const uint8_t *j, size_t n, int orientation, int big_endian,
                          size_t *out_n) {
    uint8_t app[2 + 2 + 6 + 8 + 2 + 12 + 4];
    size_t len = sizeof(app) - 2, k = 0;
    app[k++] = 0xFF, app[k++] = 0xE1, app[k++] = (uint8_t)(len >> 8), app[k++] = (uint8_t)len;
    memcpy(app + k, "Exif\0\0", 6), k += 6;
#define P16(v)                                                                                     \
    (big_endian ? (app[k++] = (uint8_t)((v) >> 8), app[k++] = (uint8_t)(v))                        \
                : (app[k++] = (uint8_t)(v), app[k++] = (uint8_t)((v) >> 8)))
    app[k++] = big_endian ? 'M' : 'I', app[k++] = big_endian ? 'M' : 'I';
    P16(42);
    P16(8), P16(0); /* IFD at 8 (32-bit: low half first in LE; fixed below for BE) */
    if (big_endian) app[k - 4] = 0, app[k - 3] = 0, app[k - 2] = 0, app[k - 1] = 8;
    P16(1);                              /* one entry */
    P16(0x0112), P16(3), P16(1), P16(0); /* tag, SHORT, count 1 (32-bit) */
    if (big_endian) app[k - 4] = 0, app[k - 3] = 0, app[k - 2] = 0, app[k - 1] = 1;
    P16(orientation), P16(0);
    app[k++] = 0, app[k++] = 0, app[k++] = 0, app[k++] = 0; /* next IFD */
#undef P16
    uint8_t *o = malloc(n + k);
    memcpy(o, j, 2);
    memcpy(o + 2, app, k);
    memcpy(o + 2 + k, j + 2, n - 2);
    *out_n = n + k;
    return o;
}

static void test_exif(void) {
    /* Quadrants: TL red, TR green, BL blue, BR white; 32x16 so every quadrant is MCU aligned. */
    int w = 32, h = 16;
    uint8_t *px = malloc((size_t)w * h * 3);
    static const uint8_t col[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(px + ((size_t)y * w + x) * 3, col[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    size_t n;
    uint8_t *j = encode(px, w, h, TJPF_RGB, 0, &n);
    /* Which stored quadrant (0 TL, 1 TR, 2 BL, 3 BR) lands top-left / top-right, by orientation. */
    static const int tl[9] = {0, 0, 1, 3, 2, 0, 2, 3, 1};
    static const int tr[9] = {0, 1, 0, 2, 3, 2, 0, 1, 3};
    mkdirs("exif");
    mkdirs("exif/x");
    for (int o = 1; o <= 8; o++) {
        size_t m;
        uint8_t *e = with_exif(j, n, o, o % 2, &m);
        CHECK(kiln_exif_orientation(e, m) == o, "exif parse orientation %d (%s endian)", o,
              o % 2 ? "big" : "little");
        char p[512];
        snprintf(p, sizeof(p), "%s/exif/x/o%d.jpg", root, o);
        write_file(p, e, m);
        free(e);
    }
    CHECK(kiln_exif_orientation(j, n) == 1, "no exif = 1");
    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    char p[512];
    snprintf(p, sizeof(p), "%s/exif", root);
    opt.path = p;
    kiln_dataset_t ds;
    CHECK(kiln_dataset_open(&opt, &ds) == KILN_OK && kiln_dataset_size(ds) == 8, "exif dataset");
    for (int o = 1; o <= 8 && ds; o++) {
        uint8_t *img;
        int iw, ih;
        kiln_status st = kiln_dataset_decode(ds, (size_t)o - 1, 3, &img, &iw, &ih);
        CHECK(st == KILN_OK, "decode o%d", o);
        if (st != KILN_OK) continue;
        int sw = o >= 5;
        CHECK(iw == (sw ? h : w) && ih == (sw ? w : h), "orientation %d dims %dx%d", o, iw, ih);
        const uint8_t *a = img + ((size_t)1 * iw + 1) * 3, *b = img + ((size_t)1 * iw + iw - 2) * 3;
        CHECK(abs(a[0] - col[tl[o]][0]) < 40 && abs(a[1] - col[tl[o]][1]) < 40 &&
                  abs(a[2] - col[tl[o]][2]) < 40,
              "orientation %d top-left is quadrant %d (got %d,%d,%d)", o, tl[o], a[0], a[1], a[2]);
        CHECK(abs(b[0] - col[tr[o]][0]) < 40 && abs(b[1] - col[tr[o]][1]) < 40 &&
                  abs(b[2] - col[tr[o]][2]) < 40,
              "orientation %d top-right is quadrant %d", o, tr[o]);
        free(img);
    }
    kiln_dataset_free(ds);
    free(px);
    free(j);
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs(a[i] - b[i]);
    return s / (double)n;
}

static void test_formats(void) {
    mkdirs("fmt");
    mkdirs("fmt/a");
    char p[512];
    int w = 48, h = 32;
    uint8_t *px = picture(w, h, 0), *gray = malloc((size_t)w * h),
            *cmyk = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        gray[i] = px[3 * i + 1];
        /* Inverted (Adobe) CMYK with K = 255 decodes to RGB = (C, M, Y). */
        cmyk[4 * i] = px[3 * i], cmyk[4 * i + 1] = px[3 * i + 1], cmyk[4 * i + 2] = px[3 * i + 2];
        cmyk[4 * i + 3] = 255;
    }
    size_t n;
    uint8_t *j;
    j = encode(px, w, h, TJPF_RGB, 0, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/0color.jpg", root), write_file(p, j, n), free(j);
    j = encode(gray, w, h, TJPF_GRAY, 0, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/1gray.jpg", root), write_file(p, j, n), free(j);
    j = encode(cmyk, w, h, TJPF_CMYK, 0, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/2cmyk.jpg", root), write_file(p, j, n), free(j);
    j = encode(px, w, h, TJPF_RGB, 1, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/3progressive.jpg", root), write_file(p, j, n), free(j);
    uint8_t one[3] = {10, 200, 30};
    j = encode(one, 1, 1, TJPF_RGB, 0, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/4tiny.jpg", root), write_file(p, j, n), free(j);
    uint8_t *wide = picture(2000, 3, 1);
    j = encode(wide, 2000, 3, TJPF_RGB, 0, &n);
    snprintf(p, sizeof(p), "%s/fmt/a/5wide.JPEG", root), write_file(p, j, n), free(j);

    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    snprintf(p, sizeof(p), "%s/fmt", root);
    opt.path = p;
    kiln_dataset_t ds;
    CHECK(kiln_dataset_open(&opt, &ds) == KILN_OK && kiln_dataset_size(ds) == 6, "formats dataset");
    if (!ds) return;
    uint8_t *img;
    int iw, ih;
    CHECK(kiln_dataset_decode(ds, 0, 3, &img, &iw, &ih) == KILN_OK &&
              mean_abs_diff(img, px, (size_t)w * h * 3) < 4,
          "color decode");
    free(img);
    CHECK(kiln_dataset_decode(ds, 1, 3, &img, &iw, &ih) == KILN_OK && iw == w &&
              abs(img[3 * 100] - gray[100]) < 6 && img[3 * 100] == img[3 * 100 + 2],
          "gray JPEG becomes RGB");
    free(img);
    CHECK(kiln_dataset_decode(ds, 2, 3, &img, &iw, &ih) == KILN_OK &&
              mean_abs_diff(img, px, (size_t)w * h * 3) < 6,
          "CMYK JPEG becomes RGB (diff %.2f)",
          img ? mean_abs_diff(img, px, (size_t)w * h * 3) : -1);
    free(img);
    CHECK(kiln_dataset_decode(ds, 2, 1, &img, &iw, &ih) == KILN_OK, "CMYK JPEG to gray");
    free(img);
    CHECK(kiln_dataset_decode(ds, 3, 3, &img, &iw, &ih) == KILN_OK &&
              mean_abs_diff(img, px, (size_t)w * h * 3) < 4,
          "progressive decode");
    free(img);
    CHECK(kiln_dataset_decode(ds, 4, 3, &img, &iw, &ih) == KILN_OK && iw == 1 && ih == 1 &&
              abs(img[1] - 200) < 12,
          "1x1 decode");
    free(img);
    CHECK(kiln_dataset_decode(ds, 0, 1, &img, &iw, &ih) == KILN_OK, "color to gray");
    free(img);
    /* Every variant goes through the loader with a random resized crop. */
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.augment = "rrc:20,flip:hv,rotate:0.1,translate:0.1:wrap,jitter:0.3,erase:0.5,cutout:4";
    lo.batch = 6;
    lo.workers = 2;
    lo.on_error = KILN_ON_ERROR_FAIL;
    kiln_loader_t ld;
    CHECK(kiln_loader_create(&lo, &ld) == KILN_OK, "loader on formats");
    if (ld) {
        kiln_batch b;
        CHECK(kiln_loader_next(ld, &b) == KILN_OK && b.n == 6 && b.width == 20, "formats batch");
        kiln_loader_release(ld, &b);
        kiln_loader_free(ld);
    }
    lo.augment = "resize:8,center:8,padcrop:2";
    lo.channels = 1;
    CHECK(kiln_loader_create(&lo, &ld) == KILN_OK, "gray loader");
    if (ld) {
        kiln_batch b;
        CHECK(kiln_loader_next(ld, &b) == KILN_OK && b.channels == 1 && b.width == 8, "gray batch");
        kiln_loader_release(ld, &b);
        kiln_loader_free(ld);
    }
    kiln_dataset_free(ds);
    free(px);
    free(gray);
    free(cmyk);
    free(wide);
}

static kiln_dataset_t open_path(const char *path);

/* A valid progressive JPEG of 1 + 3 x 63 x 3 = 568 scans (every AC coefficient of every
   component in a band of its own, in three successive-approximation passes): over the decoder's
   cap of 500 scans, each of which would be a pass over the whole coefficient buffer. */
static uint8_t *scan_bomb(size_t *n) {
    enum { W = 16, H = 16, NSCANS = 1 + 3 * 63 * 3 };
    static jpeg_scan_info scans[NSCANS];
    int k = 0;
    scans[k].comps_in_scan = 3;
    for (int c = 0; c < 3; c++) scans[k].component_index[c] = c;
    scans[k].Ss = scans[k].Se = scans[k].Ah = scans[k].Al = 0, k++;
    static const int ah[3] = {0, 2, 1}, al[3] = {2, 1, 0};
    for (int pass = 0; pass < 3; pass++)
        for (int c = 0; c < 3; c++)
            for (int band = 1; band < 64; band++, k++) {
                scans[k].comps_in_scan = 1;
                scans[k].component_index[0] = c;
                scans[k].Ss = scans[k].Se = band;
                scans[k].Ah = ah[pass], scans[k].Al = al[pass];
            }
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *buf = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&ci, &buf, &len);
    ci.image_width = W, ci.image_height = H;
    ci.input_components = 3, ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    ci.scan_info = scans, ci.num_scans = NSCANS;
    jpeg_start_compress(&ci, TRUE);
    uint8_t *px = picture(W, H, 5);
    while (ci.next_scanline < H) {
        JSAMPROW row = px + (size_t)ci.next_scanline * W * 3;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(px);
    *n = len;
    return buf;
}

/* Hostile files for test_broken, in DIR: a WebP named .jpg, a progressive scan bomb, a FIFO
   named .jpg (opening it for reading would wait for a writer forever) and gone.jpg, which the
   test deletes between listing and reading. */
static void write_hostile(const char *dir) {
    char rel[256], p[512];
    snprintf(rel, sizeof(rel), "%s/gone.jpg", dir);
    write_jpeg(rel, 32, 24, 9);
    static const uint8_t webp[] = {0x52, 0x49, 0x46, 0x46, 0x1e, 0x00, 0x00, 0x00, 0x57, 0x45,
                                   0x42, 0x50, 0x56, 0x50, 0x38, 0x4c, 0x11, 0x00, 0x00, 0x00,
                                   0x2f, 0x01, 0x40, 0x00, 0x00, 0x07, 0x50, 0x8f, 0x22, 0x17,
                                   0xa5, 0xff, 0x81, 0x88, 0xe8, 0x7f, 0x00, 0x00};
    snprintf(p, sizeof(p), "%s/%s/webp.jpg", root, dir), write_file(p, webp, sizeof(webp));
    size_t n;
    uint8_t *bomb = scan_bomb(&n);
    snprintf(p, sizeof(p), "%s/%s/scans.jpg", root, dir), write_file(p, bomb, n);
    free(bomb);
    snprintf(p, sizeof(p), "%s/%s/fifo.jpg", root, dir);
    CHECK(mkfifo(p, 0644) == 0, "mkfifo %s", p);
}

/* Each hostile file fails with its name and the reason. */
static void check_hostile_reasons(kiln_dataset_t ds) {
    static const struct {
        const char *file, *reason;
    } want[] = {{"broken/fifo.jpg", "not a regular file"},
                {"broken/gone.jpg", "No such file"},
                {"broken/scans.jpg", "more than 500 scans"},
                {"broken/webp.jpg", "not a JPEG (starts with 52 49)"}};
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        size_t i = 0;
        while (i < kiln_dataset_size(ds) && !has(kiln_dataset_sample_name(ds, i), want[w].file))
            i++;
        uint8_t *img = NULL;
        int iw, ih;
        kiln_status st = i < kiln_dataset_size(ds) ? kiln_dataset_decode(ds, i, 3, &img, &iw, &ih)
                                                   : KILN_NOT_FOUND;
        CHECK(st != KILN_OK && has(kiln_last_error(), want[w].file) &&
                  has(kiln_last_error(), want[w].reason),
              "%s refused with '%s'", want[w].file, want[w].reason);
        free(img);
    }
}

/* Datasets without images are refused with the reason; an empty class keeps its index. */
static void test_empty_sets(void) {
    char p[512];
    mkdirs("empty");
    snprintf(p, sizeof(p), "%s/empty", root);
    CHECK(!open_path(p) && has(kiln_last_error(), "no class folders"), "an empty directory");
    mkdirs("noimg");
    mkdirs("noimg/a");
    snprintf(p, sizeof(p), "%s/noimg/a/readme.txt", root), write_file(p, "x", 1);
    snprintf(p, sizeof(p), "%s/noimg", root);
    CHECK(!open_path(p) && has(kiln_last_error(), "no samples"),
          "class folders without images (a text file only)");
    mkdirs("noimg/b");
    write_jpeg("noimg/b/x.jpg", 8, 8, 1);
    kiln_dataset_t ds = open_path(p);
    CHECK(ds && kiln_dataset_num_classes(ds) == 2 && kiln_dataset_size(ds) == 1 &&
              kiln_dataset_label(ds, 0) == 1,
          "a class without images keeps its index (labels follow the folder order)");
    kiln_dataset_free(ds);
}

static void test_broken(void) {
    mkdirs("bad");
    mkdirs("bad/good");
    mkdirs("bad/broken");
    for (int i = 0; i < 6; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "bad/good/g%d.jpg", i);
        write_jpeg(rel, 40, 30, i);
    }
    char p[512];
    uint8_t *px = picture(64, 48, 3);
    size_t n;
    uint8_t *j = encode(px, 64, 48, TJPF_RGB, 0, &n);
    snprintf(p, sizeof(p), "%s/bad/broken/truncated.jpg", root), write_file(p, j, n / 2);
    snprintf(p, sizeof(p), "%s/bad/broken/zero.jpg", root), write_file(p, j, 0);
    uint8_t rnd[700];
    for (size_t i = 0; i < sizeof(rnd); i++) rnd[i] = (uint8_t)(i * 2654435761u >> 13);
    snprintf(p, sizeof(p), "%s/bad/broken/random.jpg", root), write_file(p, rnd, sizeof(rnd));
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                  'I',  'H', 'D', 'R', 0,    0,    0,    1,    0, 0, 0, 1};
    snprintf(p, sizeof(p), "%s/bad/broken/png.jpg", root), write_file(p, png, sizeof(png));
    for (size_t i = 2; i + 8 < n; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xC0) { /* SOF0: height, width at +5, +7 */
            j[i + 5] = 60000 >> 8, j[i + 6] = 60000 & 255, j[i + 7] = 60000 >> 8,
                  j[i + 8] = 60000 & 255;
            break;
        }
    snprintf(p, sizeof(p), "%s/bad/broken/huge.jpg", root), write_file(p, j, n);
    free(j);
    free(px);
    write_hostile("bad/broken");

    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    snprintf(p, sizeof(p), "%s/bad", root);
    opt.path = p;
    kiln_dataset_t ds;
    CHECK(kiln_dataset_open(&opt, &ds) == KILN_OK && kiln_dataset_size(ds) == 15, "bad dataset");
    if (!ds) return;
    snprintf(p, sizeof(p), "%s/bad/broken/gone.jpg", root);
    unlink(p); /* between listing and reading */
    int bad_named = 0;
    for (size_t i = 0; i < 9; i++) {
        uint8_t *img = NULL;
        int w, h;
        kiln_status st = kiln_dataset_decode(ds, i, 3, &img, &w, &h);
        bad_named += st != KILN_OK && has(kiln_last_error(), kiln_dataset_sample_name(ds, i));
        free(img);
    }
    CHECK(bad_named == 9, "each broken file fails to decode, named (%d of 9)", bad_named);
    check_hostile_reasons(ds);
    kiln_log_set_level(KILN_LOG_ERROR); /* the skips are expected */
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.augment = "rrc:16";
    lo.batch = 4;
    lo.workers = 2;
    kiln_loader_t ld;
    CHECK(kiln_loader_create(&lo, &ld) == KILN_OK, "skip loader");
    int ok = 1, goodlabels = 1;
    for (int64_t s = 0; ld && s < 2 * kiln_loader_steps_per_epoch(ld); s++) {
        kiln_batch b;
        if (kiln_loader_next(ld, &b) != KILN_OK) {
            ok = 0;
            break;
        }
        for (int k = 0; k < b.n; k++) goodlabels &= b.labels[k] == 1; /* "good" sorts second */
        kiln_loader_release(ld, &b);
    }
    kiln_loader_stats stt;
    if (ld) kiln_loader_get_stats(ld, &stt);
    CHECK(ok && goodlabels, "skip policy: every batch made of good files");
    CHECK(ld && stt.bad_files == 9 && stt.replaced >= 18, "bad files counted (%llu, replaced %llu)",
          ld ? (unsigned long long)stt.bad_files : 0, ld ? (unsigned long long)stt.replaced : 0);
    int stages_seen = 0;
    for (int k = 0; ld && k < KILN_STAGES; k++)
        stages_seen += stt.stage_seconds[k] > 0 && stt.stage_seconds[k] < 1e6;
    CHECK(stages_seen == KILN_STAGES, "worker time recorded for every stage (%d of %d)",
          stages_seen, KILN_STAGES);
    kiln_loader_free(ld);
    lo.on_error = KILN_ON_ERROR_FAIL;
    CHECK(kiln_loader_create(&lo, &ld) == KILN_OK, "fail loader");
    kiln_status st = KILN_OK;
    for (int s = 0; ld && s < 3 && st == KILN_OK; s++) {
        kiln_batch b;
        st = kiln_loader_next(ld, &b);
        if (st == KILN_OK) kiln_loader_release(ld, &b);
    }
    CHECK(st == KILN_CORRUPT && has(kiln_last_error(), "bad/broken/"),
          "fail policy stops with the file named");
    kiln_loader_free(ld);
    kiln_log_set_level(KILN_LOG_WARN);
    kiln_dataset_free(ds);
}

/* A JPEG cut after its first scan started decodes with a warning (premature end of data):
   an error by default, accepted with accept_warnings. */
static void test_warnings(void) {
    mkdirs("warn");
    mkdirs("warn/a");
    uint8_t *px = picture(96, 64, 2);
    size_t n;
    uint8_t *j = encode(px, 96, 64, TJPF_RGB, 0, &n);
    char p[512];
    snprintf(p, sizeof(p), "%s/warn/a/cut.jpg", root);
    write_file(p, j, n * 8 / 10);
    snprintf(p, sizeof(p), "%s/warn", root);
    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    opt.path = p;
    kiln_dataset_t ds = NULL;
    CHECK(kiln_dataset_open(&opt, &ds) == KILN_OK, "warn dataset");
    for (int accept = 0; ds && accept < 2; accept++) {
        kiln_loader_options lo;
        kiln_loader_options_init(&lo);
        lo.dataset = ds;
        lo.augment = "rrc:16";
        lo.batch = 1;
        lo.workers = 1;
        lo.on_error = KILN_ON_ERROR_FAIL;
        lo.accept_warnings = accept;
        kiln_loader_t ld;
        kiln_batch b;
        kiln_status st = kiln_loader_create(&lo, &ld);
        if (st == KILN_OK) st = kiln_loader_next(ld, &b);
        if (accept)
            CHECK(st == KILN_OK, "decoder warning accepted on request");
        else
            CHECK(st == KILN_CORRUPT && has(kiln_last_error(), "warning") &&
                      has(kiln_last_error(), "cut.jpg"),
                  "decoder warning is an error by default");
        if (st == KILN_OK) kiln_loader_release(ld, &b);
        kiln_loader_free(ld);
    }
    kiln_dataset_free(ds);
    free(j);
    free(px);
}

static uint64_t run_hash(kiln_dataset_t ds, const char *spec, int workers, int slots, int64_t epoch,
                         int64_t step, int nbatches, uint64_t *per_batch) {
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.augment = spec;
    lo.batch = 5;
    lo.workers = workers;
    lo.slots = slots;
    lo.seed = 42;
    kiln_loader_t ld;
    if (kiln_loader_create(&lo, &ld) != KILN_OK) return 0;
    if ((epoch || step) && kiln_loader_seek(ld, epoch, step) != KILN_OK) return 0;
    uint64_t h = KILN_HASH_INIT;
    for (int i = 0; i < nbatches; i++) {
        kiln_batch b;
        if (kiln_loader_next(ld, &b) != KILN_OK) return 0;
        uint64_t hb =
            kiln_hash64(KILN_HASH_INIT, b.images, (size_t)b.n * b.width * b.height * b.channels);
        hb = kiln_hash64(hb, b.labels, sizeof(int32_t) * (size_t)b.n);
        if (per_batch) per_batch[i] = hb;
        h = kiln_hash64(h, &hb, sizeof(hb));
        kiln_loader_release(ld, &b);
    }
    kiln_loader_free(ld);
    return h;
}

static void test_determinism(void) {
    mkdirs("det");
    for (int c = 0; c < 3; c++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "det/c%d", c);
        mkdirs(rel);
        for (int i = 0; i < 6; i++) {
            snprintf(rel, sizeof(rel), "det/c%d/%d.jpg", c, i);
            write_jpeg(rel, 60 + 8 * i, 40 + 4 * c, i + c);
        }
    }
    char p[512];
    snprintf(p, sizeof(p), "%s/det", root);
    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    opt.path = p;
    kiln_dataset_t ds;
    CHECK(kiln_dataset_open(&opt, &ds) == KILN_OK && kiln_dataset_num_classes(ds) == 3, "det set");
    if (!ds) return;
    const char *spec = "rrc:24,flip:h,jitter:0.3,rotate:0.05";
    uint64_t all[8], resumed[3];
    uint64_t h1 = run_hash(ds, spec, 1, 1, 0, 0, 8, all); /* 4 steps/epoch: 2 epochs */
    uint64_t h3 = run_hash(ds, spec, 3, 2, 0, 0, 8, NULL);
    uint64_t h2 = run_hash(ds, spec, 2, 6, 0, 0, 8, NULL);
    CHECK(h1 && h1 == h3 && h1 == h2, "same batches with 1, 2 and 3 workers");
    run_hash(ds, spec, 2, 3, 1, 1, 3, resumed);
    CHECK(resumed[0] == all[5] && resumed[1] == all[6] && resumed[2] == all[7],
          "resume at epoch 1 step 1 reproduces the batches");
    CHECK(all[0] != all[4], "epochs differ");
    /* Seeking while workers are filling slots discards their work cleanly. */
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.augment = spec;
    lo.batch = 5;
    lo.workers = 3;
    lo.seed = 42;
    kiln_loader_t ld;
    int ok = kiln_loader_create(&lo, &ld) == KILN_OK;
    kiln_batch b, held[8];
    ok = ok && kiln_loader_next(ld, &b) == KILN_OK;
    if (ok) kiln_loader_release(ld, &b);
    ok = ok && kiln_loader_seek(ld, 1, 2) == KILN_OK && kiln_loader_next(ld, &b) == KILN_OK;
    if (ok) {
        uint64_t hb = kiln_hash64(KILN_HASH_INIT, b.images, (size_t)b.n * 24 * 24 * 3);
        hb = kiln_hash64(hb, b.labels, sizeof(int32_t) * (size_t)b.n);
        ok = hb == all[6];
        kiln_loader_release(ld, &b);
    }
    CHECK(ok, "seek while busy, then the right batch");
    int nheld = 0;
    while (ld && nheld < 8 && kiln_loader_next(ld, &held[nheld]) == KILN_OK) nheld++;
    CHECK(nheld == 5 && has(kiln_last_error(), "slots are held"),
          "holding every slot is an error, not a hang (%d)", nheld);
    kiln_loader_free(ld);
    kiln_dataset_free(ds);
}

/* IDX helpers: n images of h x w whose first two pixels encode the index. */
static void write_idx(const char *images, const char *labels, int n, int h, int w, int gz,
                      uint32_t magic, int nlabels) {
    size_t isz = 16 + (size_t)n * h * w, lsz = 8 + (size_t)nlabels;
    uint8_t *a = calloc(1, isz), *b = calloc(1, lsz);
    uint32_t hdr[4] = {magic, (uint32_t)n, (uint32_t)h, (uint32_t)w};
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) a[4 * k + j] = (uint8_t)(hdr[k] >> (24 - 8 * j));
    uint32_t lh[2] = {0x801, (uint32_t)nlabels};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(lh[k] >> (24 - 8 * j));
    for (int i = 0; i < n; i++) {
        uint8_t *q = a + 16 + (size_t)i * h * w;
        q[0] = (uint8_t)(i & 255), q[1] = (uint8_t)(i >> 8);
        for (int k = 2; k < h * w; k++) q[k] = (uint8_t)(k * 7 + i);
    }
    for (int i = 0; i < nlabels; i++) b[8 + i] = (uint8_t)(i % 10);
    if (gz) {
        gzFile g = gzopen(images, "wb");
        gzwrite(g, a, (unsigned)isz);
        gzclose(g);
        g = gzopen(labels, "wb");
        gzwrite(g, b, (unsigned)lsz);
        gzclose(g);
    } else {
        write_file(images, a, isz);
        write_file(labels, b, lsz);
    }
    free(a);
    free(b);
}

static kiln_dataset_t open_path(const char *path) {
    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    opt.path = path;
    kiln_dataset_t ds = NULL;
    kiln_dataset_open(&opt, &ds);
    return ds;
}

static void test_idx_and_shuffle(void) {
    char im[512], lb[512];
    snprintf(im, sizeof(im), "%s/t-images-idx3-ubyte", root);
    snprintf(lb, sizeof(lb), "%s/t-labels-idx1-ubyte", root);
    write_idx(im, lb, 100, 4, 5, 0, 0x803, 100);
    kiln_dataset_t ds = open_path(im);
    CHECK(ds && kiln_dataset_size(ds) == 100 && kiln_dataset_num_classes(ds) == 10 &&
              kiln_dataset_label(ds, 13) == 3,
          "plain IDX");
    /* Shuffling covers every sample once per epoch; sharding splits it disjointly. */
    int seen[100], cover = 1, orders_differ = 0, first[100];
    for (int it = 0; ds && it < 4; it++) {
        int rank = it ? it - 1 : 0;
        kiln_loader_options lo;
        kiln_loader_options_init(&lo);
        lo.dataset = ds;
        lo.batch = 7;
        lo.workers = 2;
        lo.seed = 9;
        lo.rank = rank;
        lo.world_size = it ? 3 : 1;
        kiln_loader_t ld;
        if (kiln_loader_create(&lo, &ld) != KILN_OK) {
            cover = 0;
            break;
        }
        if (it == 1) memset(seen, 0, sizeof(seen));
        for (int e = 0; e < 2; e++) {
            if (it == 0) memset(seen, 0, sizeof(seen));
            int pos = 0;
            for (int64_t s = 0; s < kiln_loader_steps_per_epoch(ld); s++) {
                kiln_batch b;
                if (kiln_loader_next(ld, &b) != KILN_OK) {
                    cover = 0;
                    break;
                }
                for (int k = 0; k < b.n; k++) {
                    const uint8_t *q = b.images + (size_t)k * 20;
                    int id = q[0] | q[1] << 8;
                    if (id >= 100 || q[19] != (uint8_t)(19 * 7 + id) || b.labels[k] != id % 10)
                        cover = 0;
                    else
                        seen[id]++;
                    if (it == 0 && e == 0) first[pos] = id;
                    if (it == 0 && e == 1) orders_differ |= first[pos] != id;
                    pos++;
                }
                kiln_loader_release(ld, &b);
            }
            if (it == 0)
                for (int i = 0; i < 100; i++) cover &= seen[i] == 1;
            if (it) break;
        }
        kiln_loader_free(ld);
    }
    int total = 0, dup = 0;
    for (int i = 0; i < 100; i++) total += seen[i], dup |= seen[i] > 1;
    CHECK(cover, "each epoch covers every sample exactly once");
    CHECK(orders_differ, "epochs are shuffled differently");
    CHECK(total == 100 && !dup, "3 ranks cover all 100 samples once (%d)", total);
    /* Training (drop_last): every rank takes the same number of steps, the remainder dropped. */
    for (int rank = 0; ds && rank < 3; rank++) {
        kiln_loader_options lo;
        kiln_loader_options_init(&lo);
        lo.dataset = ds;
        lo.batch = 7;
        lo.drop_last = 1;
        lo.rank = rank;
        lo.world_size = 3;
        kiln_loader_t ld;
        int ok = kiln_loader_create(&lo, &ld) == KILN_OK;
        CHECK(ok && kiln_loader_steps_per_epoch(ld) == 4, "drop_last: rank %d takes 4 steps of 7",
              rank);
        if (ok) kiln_loader_free(ld);
    }
    kiln_dataset_free(ds);

    snprintf(im, sizeof(im), "%s/z-images-idx3-ubyte.gz", root);
    snprintf(lb, sizeof(lb), "%s/z-labels-idx1-ubyte.gz", root);
    write_idx(im, lb, 30, 28, 28, 1, 0x803, 30);
    ds = open_path(im);
    CHECK(ds && kiln_dataset_size(ds) == 30, "gzipped IDX");
    kiln_dataset_free(ds);
    write_idx(im, lb, 30, 28, 28, 1, 0x802, 30);
    CHECK(!open_path(im) && has(kiln_last_error(), "z-images-idx3-ubyte.gz") &&
              has(kiln_last_error(), "magic"),
          "wrong magic names the file");
    write_idx(im, lb, 30, 28, 28, 1, 0x803, 29);
    CHECK(!open_path(im) && has(kiln_last_error(), "z-labels-idx1-ubyte.gz"),
          "label count mismatch names the file");

    const char *fm = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(fm, R_OK) == 0) {
        ds = open_path(fm);
        CHECK(ds && kiln_dataset_size(ds) == 10000 && kiln_dataset_num_classes(ds) == 10,
              "Fashion-MNIST test set");
        kiln_loader_options lo;
        kiln_loader_options_init(&lo);
        lo.dataset = ds;
        lo.batch = 64;
        lo.workers = 2;
        lo.augment = "padcrop:2,flip:h";
        kiln_loader_t ld = NULL;
        kiln_batch b;
        CHECK(ds && kiln_loader_create(&lo, &ld) == KILN_OK &&
                  kiln_loader_next(ld, &b) == KILN_OK && b.width == 28 && b.channels == 1,
              "Fashion-MNIST batch");
        kiln_loader_free(ld);
        kiln_dataset_free(ds);
    } else {
        printf("skip: Fashion-MNIST not installed (dataset-fashion-mnist)\n");
    }
}

static void test_classes_split_tar(void) {
    mkdirs("cls");
    mkdirs("cls/b_class");
    mkdirs("cls/a_class");
    mkdirs("cls/C");
    mkdirs("cls/a_class/sub");
    write_jpeg("cls/b_class/x.jpg", 20, 20, 1);
    write_jpeg("cls/b_class/y.JPG", 20, 20, 2);
    write_jpeg("cls/a_class/z.jpeg", 20, 20, 3);
    write_jpeg("cls/a_class/sub/w.jpg", 20, 20, 4);
    write_jpeg("cls/C/v.Jpg", 20, 20, 5);
    char p[512];
    snprintf(p, sizeof(p), "%s/cls/C/notes.txt", root), write_file(p, "x", 1);
    snprintf(p, sizeof(p), "%s/cls", root);
    kiln_dataset_t ds = open_path(p);
    CHECK(ds && kiln_dataset_num_classes(ds) == 3 && kiln_dataset_size(ds) == 5, "class dir");
    if (ds) {
        CHECK(!strcmp(kiln_dataset_class_name(ds, 0), "C") &&
                  !strcmp(kiln_dataset_class_name(ds, 1), "a_class") &&
                  !strcmp(kiln_dataset_class_name(ds, 2), "b_class"),
              "classes in sorted order");
        int okl = 1;
        for (size_t i = 0; i < kiln_dataset_size(ds); i++) {
            const char *nm = kiln_dataset_sample_name(ds, i);
            int want = nm[0] == 'C' ? 0 : nm[0] == 'a' ? 1 : 2;
            okl &= kiln_dataset_label(ds, i) == want;
        }
        CHECK(okl, "labels follow folders");
        /* Tar shards hold the same samples and labels. */
        char out[512];
        snprintf(out, sizeof(out), "%s/packed", root);
        int shards = 0;
        CHECK(kiln_data_pack(ds, out, 1500, &shards) == KILN_OK && shards >= 2, "pack (%d shards)",
              shards);
        kiln_dataset_t tds = open_path(out);
        CHECK(tds && kiln_dataset_size(tds) == 5 && !strcmp(kiln_dataset_kind(tds), "tar") &&
                  !strcmp(kiln_dataset_class_name(tds, 1), "a_class"),
              "tar shards open");
        int same = tds != NULL;
        for (size_t i = 0; tds && i < 5; i++) {
            uint8_t *a = NULL, *b = NULL;
            int w1, h1, w2, h2;
            same &= kiln_dataset_label(ds, i) == kiln_dataset_label(tds, i);
            same &= kiln_dataset_decode(ds, i, 3, &a, &w1, &h1) == KILN_OK &&
                    kiln_dataset_decode(tds, i, 3, &b, &w2, &h2) == KILN_OK &&
                    !memcmp(a, b, (size_t)w1 * h1 * 3);
            free(a);
            free(b);
        }
        CHECK(same, "tar samples decode like the originals");
        kiln_dataset_free(tds);
        kiln_dataset_free(ds);
    }
    /* Validation split: disjoint, complete, stable when files are added. */
    mkdirs("split");
    mkdirs("split/k");
    for (int i = 0; i < 40; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "split/k/%02d.jpg", i);
        write_jpeg(rel, 8, 8, i);
    }
    snprintf(p, sizeof(p), "%s/split", root);
    kiln_dataset_options opt;
    kiln_dataset_options_init(&opt);
    opt.path = p;
    opt.val_fraction = 0.25;
    kiln_dataset_t tr, va;
    opt.split = KILN_SPLIT_TRAIN;
    kiln_dataset_open(&opt, &tr);
    opt.split = KILN_SPLIT_VAL;
    kiln_dataset_open(&opt, &va);
    CHECK(tr && va && kiln_dataset_size(tr) + kiln_dataset_size(va) == 40 &&
              kiln_dataset_size(va) >= 4 && kiln_dataset_size(va) <= 18,
          "split sizes %zu + %zu", tr ? kiln_dataset_size(tr) : 0, va ? kiln_dataset_size(va) : 0);
    char vnames[40][16];
    size_t nv = va ? kiln_dataset_size(va) : 0;
    for (size_t i = 0; i < nv; i++)
        snprintf(vnames[i], sizeof(vnames[i]), "%s", kiln_dataset_sample_name(va, i));
    kiln_dataset_free(tr);
    kiln_dataset_free(va);
    write_jpeg("split/k/new1.jpg", 8, 8, 1);
    write_jpeg("split/k/new2.jpg", 8, 8, 2);
    kiln_dataset_open(&opt, &va);
    int stable = va != NULL;
    for (size_t i = 0, j = 0; va && i < kiln_dataset_size(va); i++) {
        const char *nm = kiln_dataset_sample_name(va, i);
        if (has(nm, "new")) continue;
        stable &= j < nv && !strcmp(nm, vnames[j++]);
    }
    CHECK(stable, "validation split stable when files are added");
    kiln_dataset_free(va);
}

/* kiln_resample against a double-precision evaluation of the same triangle filter (support
   = the downscale factor, at least 1; edge taps repeat the edge): the fixed-point passes round
   twice, so outputs stay within 2 levels and on average well under one. Sizes and boxes cover
   rows that are not a multiple of the vector width, upscales, and a filter wider than the
   vector path's 32 taps. */
static void ref_axis(int n, int len, double b0, double bl, int i, int *lo, int *hi, double *w) {
    double f = bl / n, support = f > 1 ? f : 1, center = b0 + (i + 0.5) * f, total = 0;
    *lo = (int)floor(center - support), *hi = (int)ceil(center + support);
    for (int j = *lo; j < *hi; j++) {
        double d = fabs((j + 0.5 - center) / support);
        w[j - *lo] = d < 1 ? 1 - d : 0;
        total += w[j - *lo];
    }
    for (int j = *lo; j < *hi; j++) w[j - *lo] /= total;
}

static void test_resample_reference(void) {
    static const struct {
        int sw, sh, c, dw, dh;
        double bx, by, bw, bh;
    } cases[] = {
        {500, 375, 3, 224, 224, 37.5, 20.25, 301, 280.5},
        {333, 251, 3, 224, 224, 0, 0, 333, 251},
        {97, 61, 3, 45, 37, 3.3, 1.7, 80.1, 55.2},
        {64, 48, 1, 29, 31, 0.5, 0, 63, 47.5},
        {40, 30, 3, 101, 77, 2, 3, 30.5, 20},
        {700, 90, 3, 17, 9, 5, 0, 690, 90},
        {250, 260, 1, 224, 199, 11, 13, 227, 240},
        {129, 131, 3, 100, 61, 0, 0, 129, 131},
    };
    int worst = 0, bad = 0;
    double mean_worst = 0;
    kiln_scratch sc = {NULL, 0};
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        int sw = cases[t].sw, sh = cases[t].sh, c = cases[t].c, dw = cases[t].dw, dh = cases[t].dh;
        uint8_t *src = malloc((size_t)sw * sh * c), *out = malloc((size_t)dw * dh * c);
        double *wx = malloc(sizeof(double) * 1024), *wy = malloc(sizeof(double) * 1024);
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw * c; x++) {
                double v = 128 + 90 * sin(x * 0.07 + y * 0.05) +
                           (double)((x * 7919 + y * 104729) % 41) - 20;
                src[(size_t)y * sw * c + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        if (kiln_resample(src, sw, sh, c, cases[t].bx, cases[t].by, cases[t].bw, cases[t].bh, out,
                          dw, dh, &sc) != KILN_OK) {
            bad++;
            continue;
        }
        double sum = 0;
        for (int oy = 0; oy < dh; oy++) {
            int ylo, yhi, xlo, xhi;
            ref_axis(dh, sh, cases[t].by, cases[t].bh, oy, &ylo, &yhi, wy);
            for (int ox = 0; ox < dw; ox++) {
                ref_axis(dw, sw, cases[t].bx, cases[t].bw, ox, &xlo, &xhi, wx);
                for (int k = 0; k < c; k++) {
                    double v = 0;
                    for (int y = ylo; y < yhi; y++)
                        for (int x = xlo; x < xhi; x++) {
                            int cy = y < 0 ? 0 : y >= sh ? sh - 1 : y;
                            int cx = x < 0 ? 0 : x >= sw ? sw - 1 : x;
                            v += wy[y - ylo] * wx[x - xlo] * src[((size_t)cy * sw + cx) * c + k];
                        }
                    int d = abs(out[((size_t)oy * dw + ox) * c + k] - (int)lround(v));
                    sum += d;
                    if (d > worst) worst = d;
                }
            }
        }
        sum /= (double)dw * dh * c;
        if (sum > mean_worst) mean_worst = sum;
        free(src);
        free(out);
        free(wx);
        free(wy);
    }
    free(sc.p);
    printf("resample vs reference: worst %d levels, worst mean %.3f\n", worst, mean_worst);
    CHECK(bad == 0 && worst <= 2 && mean_worst < 0.5,
          "resampler within 2 levels of a double-precision reference (worst %d, worst mean %.3f)",
          worst, mean_worst);
}

/* The vector forms (AVX2 row filter, 8 x 8 transposes through 4-byte pixels) against the plain
   C loops, byte for byte, on random boxes: sizes that are not multiples of 8, boxes reaching
   past the edges, one-pixel sides, filters wider than the vector path's 32 taps, the source's
   last row at the end of its allocation (so an over-long read would show under ASan). */
static void test_resample_simd_matches_c(void) {
    kiln_rng r = kiln_rng_make(11, 0, 0);
    kiln_scratch sa = {NULL, 0}, sb = {NULL, 0};
    int cases = 0, differ = 0, failed = 0;
    for (int t = 0; t < 400; t++) {
        int c = t % 4 == 3 ? 1 : 3;
        int sw = 1 + (int)kiln_rng_below(&r, t % 5 == 0 ? 12 : 520);
        int sh = 1 + (int)kiln_rng_below(&r, t % 7 == 0 ? 12 : 400);
        int dw = 1 + (int)kiln_rng_below(&r, t % 11 == 0 ? 9 : 240);
        int dh = 1 + (int)kiln_rng_below(&r, t % 13 == 0 ? 9 : 240);
        double bw = kiln_rng_range(&r, 0.3, 1.2) * sw, bh = kiln_rng_range(&r, 0.3, 1.2) * sh;
        double bx = kiln_rng_range(&r, -0.1 * sw, sw - 0.5 * bw);
        double by = kiln_rng_range(&r, -0.1 * sh, sh - 0.5 * bh);
        if (t % 17 == 0) dw = 3, dh = 2; /* downscales of over 32 taps */
        size_t n = (size_t)sw * sh * c, on = (size_t)dw * dh * c;
        uint8_t *src = malloc(n), *oa = malloc(on), *ob = malloc(on);
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)(kiln_rng_u64(&r) >> 56);
        kiln_resample_set_simd(1);
        kiln_status s1 = kiln_resample(src, sw, sh, c, bx, by, bw, bh, oa, dw, dh, &sa);
        kiln_resample_set_simd(0);
        kiln_status s2 = kiln_resample(src, sw, sh, c, bx, by, bw, bh, ob, dw, dh, &sb);
        kiln_resample_set_simd(1);
        if (s1 != KILN_OK || s2 != KILN_OK)
            failed++;
        else if (memcmp(oa, ob, on) != 0 && differ++ == 0)
            printf("first difference: %dx%dx%d box %.2f,%.2f %.2fx%.2f -> %dx%d\n", sw, sh, c, bx,
                   by, bw, bh, dw, dh);
        cases++;
        free(src);
        free(oa);
        free(ob);
    }
    free(sa.p);
    free(sb.p);
    CHECK(failed == 0 && differ == 0,
          "vector and C resamplers agree byte for byte (%d cases, %d differ, %d failed)", cases,
          differ, failed);
}

static void test_geometry(void) {
    /* Pixel (x, y) = (x, y, x ^ y) on 40x30. */
    int w = 40, h = 30;
    uint8_t *src = malloc((size_t)w * h * 3), out[40 * 30 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = src + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)x, q[1] = (uint8_t)y, q[2] = (uint8_t)(x ^ y);
        }
    kiln_augment_t a;
    int ok;
    CHECK(kiln_augment_parse("center:10x6", &a) == KILN_OK, "parse center");
    ok = kiln_augment_apply(a, src, w, h, 3, 1, 0, 0, out, 10, 6) == KILN_OK;
    for (int y = 0; y < 6 && ok; y++)
        for (int x = 0; x < 10; x++)
            ok &= out[(y * 10 + x) * 3] == x + 15 && out[(y * 10 + x) * 3 + 1] == y + 12;
    CHECK(ok, "center crop crops the requested box");
    kiln_augment_free(a);
    kiln_augment_parse("flip:h:1", &a);
    ok = kiln_augment_apply(a, src, w, h, 3, 1, 0, 0, out, w, h) == KILN_OK;
    for (int y = 0; y < h && ok; y++)
        for (int x = 0; x < w; x++) ok &= out[(y * w + x) * 3] == w - 1 - x;
    CHECK(ok, "flip:h flips");
    kiln_augment_free(a);
    kiln_augment_parse("flip:v:1", &a);
    ok = kiln_augment_apply(a, src, w, h, 3, 1, 0, 0, out, w, h) == KILN_OK;
    for (int y = 0; y < h && ok; y++) ok &= out[(y * w + 3) * 3 + 1] == h - 1 - y;
    CHECK(ok, "flip:v flips");
    kiln_augment_free(a);
    kiln_augment_parse("flip:h:0", &a);
    ok = kiln_augment_apply(a, src, w, h, 3, 1, 0, 0, out, w, h) == KILN_OK &&
         !memcmp(out, src, sizeof(out));
    CHECK(ok, "flip probability 0 is the identity");
    kiln_augment_free(a);
    kiln_augment_parse("size:20x15", &a);
    ok = kiln_augment_apply(a, src, w, h, 3, 1, 0, 0, out, 20, 15) == KILN_OK;
    /* A 2x downscale of a linear ramp averages pixel pairs: (2x + 0.5). */
    for (int x = 0; x < 20 && ok; x++) ok &= abs(out[(7 * 20 + x) * 3] - (2 * x + 1)) <= 1;
    CHECK(ok, "2x downscale averages");
    kiln_augment_free(a);
    /* Random crop: the output is exactly the window the geometry chose. */
    kiln_augment_parse("crop:12x9", &a);
    ok = 1;
    for (uint64_t i = 0; i < 20; i++) {
        kiln_rng r = kiln_rng_make(5, 0, i);
        kiln_geometry g;
        kiln_augment_geometry(a, w, h, &r, &g);
        ok &= kiln_augment_apply(a, src, w, h, 3, 5, 0, i, out, 12, 9) == KILN_OK;
        ok &= out[0] == (int)g.x && out[1] == (int)g.y && g.x + 12 <= w && g.y + 9 <= h;
    }
    CHECK(ok, "random crop = its box");
    kiln_augment_free(a);
    /* RRC boxes: inside the image, within the scale and ratio ranges (up to rounding). */
    kiln_augment_parse("rrc:8:0.2-0.6:0.5-2", &a);
    ok = 1;
    for (uint64_t i = 0; i < 200; i++) {
        kiln_rng r = kiln_rng_make(1, 2, i);
        kiln_geometry g;
        kiln_augment_geometry(a, 400, 300, &r, &g);
        double area = g.w * g.h / (400.0 * 300.0), ratio = g.w / g.h;
        ok &= g.x >= 0 && g.y >= 0 && g.x + g.w <= 400 && g.y + g.h <= 300 && g.out_w == 8;
        ok &= area > 0.19 && area < 0.61 && ratio > 0.49 && ratio < 2.02;
    }
    CHECK(ok, "rrc boxes within ranges");
    kiln_augment_free(a);
    /* The JPEG path (DCT scaling, region decode) matches a full decode + the same box. */
    uint8_t *big = picture(480, 360, 0);
    size_t n;
    uint8_t *j = encode(big, 480, 360, TJPF_RGB, 0, &n);
    mkdirs("geo");
    mkdirs("geo/a");
    char p[512];
    snprintf(p, sizeof(p), "%s/geo/a/big.jpg", root), write_file(p, j, n);
    /* The same picture stored rotated (EXIF 6, 8 and 3) goes through the same checks. */
    for (int o = 0; o < 3; o++) {
        static const int orient[3] = {6, 8, 3};
        size_t m;
        uint8_t *e = with_exif(j, n, orient[o], 1, &m);
        snprintf(p, sizeof(p), "%s/geo/a/rot%d.jpg", root, orient[o]), write_file(p, e, m);
        free(e);
    }
    snprintf(p, sizeof(p), "%s/geo", root);
    kiln_dataset_t ds = open_path(p);
    uint8_t *full = NULL;
    int fw, fh;
    const char *specs[] = {"rrc:56", "rrc:32:0.01-0.05", "resize:100,center:96", "size:40x30"};
    for (int sidx = 0; ds && sidx < 16; sidx++) {
        size_t file = (size_t)sidx / 4; /* big, rot3, rot6, rot8 */
        kiln_dataset_decode(ds, file, 3, &full, &fw, &fh);
        kiln_augment_parse(specs[sidx % 4], &a);
        int ow, oh;
        kiln_augment_output_size(a, &ow, &oh);
        kiln_loader_options lo;
        kiln_loader_options_init(&lo);
        lo.dataset = ds;
        lo.augment = specs[sidx % 4];
        lo.batch = 1;
        lo.shuffle = 0;
        lo.workers = 1;
        lo.seed = 77;
        kiln_loader_t ld;
        double worst = 0;
        int compared = 0;
        if (kiln_loader_create(&lo, &ld) == KILN_OK) {
            for (int e = 0; e < 6; e++) {
                kiln_batch b;
                uint8_t *ref = malloc((size_t)ow * oh * 3);
                if (kiln_loader_seek(ld, e, (int64_t)file) != KILN_OK ||
                    kiln_loader_next(ld, &b) != KILN_OK)
                    break;
                /* The loader draws the sample's stream from (seed, epoch, index). */
                kiln_augment_apply(a, full, fw, fh, 3, 77, (uint64_t)e, file, ref, ow, oh);
                double d = mean_abs_diff(ref, b.images, (size_t)ow * oh * 3);
                if (d > worst) worst = d;
                compared++;
                kiln_loader_release(ld, &b);
                free(ref);
            }
            kiln_loader_free(ld);
        }
        CHECK(compared == 6 && worst < 6,
              "'%s' on %s: decoder path matches full decode + box (mean diff %.2f)",
              specs[sidx % 4], kiln_dataset_sample_name(ds, file), worst);
        kiln_augment_free(a);
        free(full);
    }
    kiln_dataset_free(ds);
    free(j);
    free(big);
    free(src);
}

static void test_spec_errors(void) {
    kiln_augment_t a;
    CHECK(kiln_augment_parse("rrc:224,flip:x", &a) == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "'flip:x'"),
          "bad flip named");
    CHECK(kiln_augment_parse("rrc:224,blur:3", &a) == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "'blur:3'"),
          "unknown token named");
    CHECK(kiln_augment_parse("flip:h,rrc:224", &a) == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "'rrc:224'"),
          "geometry after pixel token");
    CHECK(kiln_augment_parse("rrc:0", &a) == KILN_INVALID_ARGUMENT, "rrc:0 rejected");
    CHECK(kiln_augment_parse("jitter:0.4:2", &a) == KILN_INVALID_ARGUMENT, "jitter range");
    CHECK(kiln_augment_parse("rrc:224:0.08-1:0.75-1.33, flip:h ,jitter:0.4", &a) == KILN_OK,
          "full spec parses");
    int w, h;
    kiln_augment_output_size(a, &w, &h);
    CHECK(w == 224 && h == 224, "spec size");
    kiln_augment_free(a);
    CHECK(kiln_augment_parse("resize:256,center:224", &a) == KILN_OK, "eval spec");
    kiln_augment_free(a);
}

static void test_uploader(void) {
    char p[512];
    snprintf(p, sizeof(p), "%s/det", root);
    kiln_dataset_t ds = open_path(p);
    kiln_backend_t be = NULL;
    if (!ds || kiln_backend_init("cpu", "", &be) != KILN_OK) {
        CHECK(0, "uploader setup");
        kiln_dataset_free(ds);
        return;
    }
    uint64_t want[8];
    run_hash(ds, "rrc:24,flip:h,jitter:0.3,rotate:0.05", 2, 0, 0, 0, 8, want);
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.augment = "rrc:24,flip:h,jitter:0.3,rotate:0.05";
    lo.batch = 5;
    lo.workers = 2;
    lo.seed = 42;
    kiln_loader_t ld;
    kiln_uploader_t up = NULL;
    int ok =
        kiln_loader_create(&lo, &ld) == KILN_OK && kiln_uploader_create(ld, be, &up) == KILN_OK;
    uint8_t host[5 * 24 * 24 * 3];
    int32_t labels[5];
    for (int i = 0; ok && i < 8; i++) {
        kiln_tensor *ti, *tl;
        kiln_batch info;
        ok = kiln_uploader_next(up, &ti, &tl, &info) == KILN_OK;
        size_t bytes = (size_t)ti->shape[0] * 24 * 24 * 3;
        ok = ok && ti->shape[0] == info.n && kiln_tensor_get(ti, host, bytes) == KILN_OK &&
             kiln_tensor_get(tl, labels, sizeof(int32_t) * (size_t)info.n) == KILN_OK;
        uint64_t hb = kiln_hash64(KILN_HASH_INIT, host, bytes);
        hb = kiln_hash64(hb, labels, sizeof(int32_t) * (size_t)info.n);
        ok = ok && hb == want[i];
    }
    CHECK(ok, "uploaded batches equal the loader's");
    kiln_loader_stats s;
    if (ld) kiln_loader_get_stats(ld, &s);
    CHECK(ld && s.wait_fraction >= 0 && s.wait_fraction <= 1 && s.images >= 40,
          "wait fraction %.2f", ld ? s.wait_fraction : -1);
    kiln_uploader_free(up);
    kiln_loader_free(ld);
    kiln_backend_free(be);
    kiln_dataset_free(ds);
}

/* Region decoding (crop to the box's columns, rows above skipped, stop after the last row)
   against a full decode at the same DCT scale. Guarantee: the box and the scale are the same,
   the region sits at an integer offset in the full image, and every pixel the resampler can
   read (box + support + 1 on each side, within the region) is byte-identical; the resampled
   outputs differ by at most 1 level (the box coordinates differ by that integer offset, which
   can move a weight's rounding) and in practice are identical. Covers 4:2:0, 4:2:2, 4:4:4,
   gray, CMYK and progressive files, all 8 EXIF orientations, 3 and 1 output channels, boxes
   that decode at 1/1, 1/2, 1/4 and 1/8, plain and fast decode. */
static void test_region(void) {
    int w = 203, h = 141; /* no side a multiple of 8 or 16 */
    uint8_t *px = picture(w, h, 5), *gray = malloc((size_t)w * h),
            *cmyk = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        px[3 * i + 2] = (uint8_t)(px[3 * i + 2] ^ (uint8_t)(i * 2654435761u >> 27)); /* texture */
        gray[i] = px[3 * i + 2];
        cmyk[4 * i] = px[3 * i], cmyk[4 * i + 1] = px[3 * i + 1], cmyk[4 * i + 2] = px[3 * i + 2];
        cmyk[4 * i + 3] = (uint8_t)(200 + i % 56);
    }
    struct {
        const char *name;
        const uint8_t *src;
        int pf, ss, prog;
    } vars[] = {
        {"4:2:0", px, TJPF_RGB, TJSAMP_420, 0},   {"4:2:2", px, TJPF_RGB, TJSAMP_422, 0},
        {"4:4:4", px, TJPF_RGB, TJSAMP_444, 0},   {"gray", gray, TJPF_GRAY, 0, 0},
        {"CMYK", cmyk, TJPF_CMYK, TJSAMP_444, 0}, {"progressive", px, TJPF_RGB, TJSAMP_420, 1}};
    kiln_decoder *rd = NULL, *fd = NULL;
    CHECK(kiln_decoder_create(&rd) == KILN_OK && kiln_decoder_create(&fd) == KILN_OK,
          "region decoders");
    if (!rd || !fd) return;
    kiln_decoder_set_full(fd, 1);
    kiln_scratch s1 = {NULL, 0}, s2 = {NULL, 0};
    int cases = 0, exact = 0, regions = 0, bad_pixels = 0, bad_out = 0, bad_box = 0, errors = 0;
    int scales[4] = {0, 0, 0, 0};
    char first[256] = "";
    for (size_t v = 0; v < sizeof(vars) / sizeof(vars[0]); v++) {
        size_t n0;
        uint8_t *j0 = encode_ss(vars[v].src, w, h, vars[v].pf, vars[v].ss, vars[v].prog, &n0);
        for (int o = 1; o <= 8; o++) {
            size_t n;
            uint8_t *j = with_exif(j0, n0, o, o & 1, &n);
            kiln_rng r = kiln_rng_make(7, (uint64_t)v, (uint64_t)o);
            for (int t = 0; t < 12; t++) {
                kiln_decode_limits lim = {1u << 26, 65500, 0, t % 3 == 2};
                int ch = t % 4 == 3 ? 1 : 3;
                kiln_jpeg_info info;
                if (kiln_jpeg_header(rd, j, n, &lim, &info) != KILN_OK ||
                    kiln_jpeg_header(fd, j, n, &lim, &info) != KILN_OK) {
                    errors++;
                    continue;
                }
                double bw = floor(kiln_rng_range(&r, 8, info.owidth)),
                       bh = floor(kiln_rng_range(&r, 8, info.oheight));
                double bx = kiln_rng_range(&r, 0, info.owidth - bw),
                       by = kiln_rng_range(&r, 0, info.oheight - bh);
                if (t % 2) bx = floor(bx), by = floor(by);
                /* Output sizes from 2x upscaling to 10x downscaling. */
                double f = exp(kiln_rng_range(&r, log(0.5), log(10.0)));
                int ow = (int)(bw / f) < 1 ? 1 : (int)(bw / f),
                    oh = (int)(bh / f) < 1 ? 1 : (int)(bh / f);
                kiln_decoded a, b;
                kiln_status sa =
                    kiln_jpeg_decode_box(rd, j, n, &info, &lim, ch, bx, by, bw, bh, ow, oh, &a);
                uint8_t *ca = NULL;
                if (sa == KILN_OK) { /* the next decode reuses the scratch */
                    ca = malloc((size_t)a.w * a.h * ch);
                    memcpy(ca, a.pixels, (size_t)a.w * a.h * ch);
                }
                kiln_status sb =
                    kiln_jpeg_decode_box(fd, j, n, &info, &lim, ch, bx, by, bw, bh, ow, oh, &b);
                if (sa != KILN_OK || sb != KILN_OK) {
                    errors++;
                    free(ca);
                    continue;
                }
                cases++;
                int scale = (int)lround(info.owidth / (double)b.w);
                for (int k = 0; k < 4; k++) scales[k] += scale == 1 << k;
                regions += a.w < b.w || a.h < b.h;
                double offx = b.bx - a.bx, offy = b.by - a.by;
                int ix = (int)lround(offx), iy = (int)lround(offy);
                /* The full decode's box is the requested one at the decoded scale. */
                double sx = (double)b.w / info.owidth, sy = (double)b.h / info.oheight;
                if (fabs(offx - ix) > 1e-6 || fabs(offy - iy) > 1e-6 || fabs(a.bw - b.bw) > 1e-6 ||
                    fabs(a.bh - b.bh) > 1e-6 || fabs(b.bx - bx * sx) > 1e-6 ||
                    fabs(b.by - by * sy) > 1e-6 || fabs(b.bw - bw * sx) > 1e-6 ||
                    fabs(b.bh - bh * sy) > 1e-6 || ix < 0 || iy < 0 || ix + a.w > b.w ||
                    iy + a.h > b.h) {
                    bad_box++;
                    free(ca);
                    continue;
                }
                double supx = fmax(1, a.bw / ow) + 1, supy = fmax(1, a.bh / oh) + 1;
                int x0 = (int)fmax(0, floor(a.bx - supx)),
                    x1 = (int)fmin(a.w, ceil(a.bx + a.bw + supx));
                int y0 = (int)fmax(0, floor(a.by - supy)),
                    y1 = (int)fmin(a.h, ceil(a.by + a.bh + supy));
                int diff = 0;
                for (int y = y0; y < y1; y++)
                    diff += memcmp(ca + ((size_t)y * a.w + x0) * ch,
                                   b.pixels + ((size_t)(y + iy) * b.w + x0 + ix) * ch,
                                   (size_t)(x1 - x0) * ch) != 0;
                bad_pixels += diff != 0;
                uint8_t *oa = malloc((size_t)ow * oh * ch), *ob = malloc((size_t)ow * oh * ch);
                kiln_resample(ca, a.w, a.h, ch, a.bx, a.by, a.bw, a.bh, oa, ow, oh, &s1);
                kiln_resample(b.pixels, b.w, b.h, ch, b.bx, b.by, b.bw, b.bh, ob, ow, oh, &s2);
                int maxd = 0;
                for (size_t i = 0; i < (size_t)ow * oh * ch; i++)
                    maxd = abs(oa[i] - ob[i]) > maxd ? abs(oa[i] - ob[i]) : maxd;
                bad_out += maxd > 1;
                exact += maxd == 0;
                if ((diff || maxd > 1) && !first[0])
                    snprintf(first, sizeof(first),
                             "%s orientation %d box %.1f,%.1f %gx%g -> %dx%d ch %d fast %d: "
                             "%d rows differ, output max diff %d",
                             vars[v].name, o, bx, by, bw, bh, ow, oh, ch, lim.fast_decode, diff,
                             maxd);
                free(oa);
                free(ob);
                free(ca);
            }
            free(j);
        }
        free(j0);
    }
    CHECK(errors == 0 && cases == 6 * 8 * 12, "region decode cases run (%d, %d errors)", cases,
          errors);
    CHECK(bad_box == 0, "region box at an integer offset of the full decode's (%d bad)", bad_box);
    CHECK(bad_pixels == 0, "region pixels identical to the full decode's (%d cases differ; %s)",
          bad_pixels, first);
    CHECK(bad_out == 0, "resampled region within 1 level of the full decode's (%d bad; %s)",
          bad_out, first);
    CHECK(regions > cases / 2 && scales[0] && scales[1] && scales[2] && scales[3],
          "cases cover cropped regions (%d of %d) and scales 1/1 %d, 1/2 %d, 1/4 %d, 1/8 %d",
          regions, cases, scales[0], scales[1], scales[2], scales[3]);
    printf("region decode: %d cases, %d cropped, resampled output identical in %d\n", cases,
           regions, exact);

    /* Truncation below a box at the top is still an error by default (the EOI is missing),
       and accepted with accept_warnings. */
    size_t n;
    uint8_t *j = encode(px, w, h, TJPF_RGB, 0, &n);
    kiln_decode_limits lim = {1u << 26, 65500, 0, 0};
    kiln_jpeg_info info;
    kiln_decoded d;
    kiln_status st = kiln_jpeg_header(rd, j, n * 6 / 10, &lim, &info);
    if (st == KILN_OK)
        st = kiln_jpeg_decode_box(rd, j, n * 6 / 10, &info, &lim, 3, 10, 2, 30, 10, 30, 10, &d);
    CHECK(st == KILN_CORRUPT && has(kiln_last_error(), "warning"),
          "truncated file fails even when the box is above the cut");
    lim.accept_warnings = 1;
    st = kiln_jpeg_header(rd, j, n * 6 / 10, &lim, &info);
    if (st == KILN_OK)
        st = kiln_jpeg_decode_box(rd, j, n * 6 / 10, &info, &lim, 3, 10, 2, 30, 10, 30, 10, &d);
    CHECK(st == KILN_OK, "truncated file accepted with accept_warnings");
    /* Garbage after the EOI does not hide the EOI from the check. */
    uint8_t *g = malloc(n + 100);
    memcpy(g, j, n);
    memset(g + n, 0, 100);
    lim.accept_warnings = 0;
    st = kiln_jpeg_header(rd, g, n + 100, &lim, &info);
    if (st == KILN_OK)
        st = kiln_jpeg_decode_box(rd, g, n + 100, &info, &lim, 3, 10, 2, 30, 10, 30, 10, &d);
    CHECK(st == KILN_OK, "trailing bytes after the EOI are fine");
    free(g);
    free(j);
    free(s1.p);
    free(s2.p);
    kiln_decoder_free(rd);
    kiln_decoder_free(fd);
    free(px);
    free(gray);
    free(cmyk);
}

int main(void) {
    snprintf(root, sizeof(root), "/tmp/kiln-test-data-XXXXXX");
    if (!mkdtemp(root)) {
        printf("mkdtemp failed\n");
        return 1;
    }
    test_spec_errors();
    test_exif();
    test_formats();
    test_region();
    test_broken();
    test_warnings();
    test_empty_sets();
    test_determinism();
    test_idx_and_shuffle();
    test_classes_split_tar();
    test_resample_reference();
    test_resample_simd_matches_c();
    test_geometry();
    test_uploader();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (check_failed == 0 && system(cmd) != 0) printf("note: could not remove %s\n", root);
    return check_done();
}
