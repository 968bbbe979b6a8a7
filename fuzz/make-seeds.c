/* Writes the fuzz targets' seed corpus into OUT/{jpeg,idx,model,checkpoint}: valid inputs
   that reach deep into each parser. JPEGs come from TurboJPEG (color at every subsampling,
   gray, progressive, CMYK, EXIF orientations, 1x1, extreme aspect ratios), IDX sets plain and
   gzipped, every zoo model plus small models that use every node type, and checkpoints from
   kiln's own writer.   usage: make-seeds OUT */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "fuzz-util.h"
#include "kiln/checkpoint.h"
#include "kiln/model.h"

static const char *out_dir;
static int written, failed;

static void put(const char *kind, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, kind, name);
    if (fuzz_write_file(path, data, n)) {
        fprintf(stderr, "make-seeds: cannot write %s: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    written++;
}

/* ---- JPEG ---- */

/* A gradient with texture, so every DCT coefficient band carries something. */
static uint8_t *pattern(int w, int h, int channels) {
    uint8_t *p = malloc((size_t)w * h * channels);
    if (!p) return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                double v = 128 + 60 * sin(0.3 * x + 0.7 * c) + 50 * cos(0.23 * y - c) +
                           ((x * 7 + y * 13 + c * 5) % 17) - 8;
                p[((size_t)y * w + x) * channels + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

/* An APP1 Exif segment holding one Orientation entry, big- or little-endian TIFF. */
static size_t exif_segment(uint8_t *s, int orientation, int le) {
    uint8_t tiff[26] = {0};
    if (le)
        memcpy(tiff, "II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00", 18);
    else
        memcpy(tiff, "MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01", 18);
    tiff[le ? 18 : 19] = (uint8_t)orientation; /* the SHORT value, then padding and next IFD 0 */
    size_t len = 2 + 6 + sizeof tiff;
    s[0] = 0xFF, s[1] = 0xE1, s[2] = (uint8_t)(len >> 8), s[3] = (uint8_t)len;
    memcpy(s + 4, "Exif\0\0", 6);
    memcpy(s + 10, tiff, sizeof tiff);
    return 2 + len;
}

static void jpeg(const char *name, int w, int h, int pf, int subsamp, int quality, int flags,
                 int orientation, int exif_le) {
    int channels = tjPixelSize[pf];
    uint8_t *px = pattern(w, h, channels);
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    if (!px || !tj || tjCompress2(tj, px, w, 0, h, pf, &jpg, &n, subsamp, quality, flags)) {
        fprintf(stderr, "make-seeds: %s: %s\n", name, tjGetErrorStr2(tj));
        failed++;
    } else if (orientation) {
        /* The Exif segment goes right after SOI, where cameras put it. */
        uint8_t *o = malloc(n + 64);
        if (o) {
            memcpy(o, jpg, 2);
            size_t e = exif_segment(o + 2, orientation, exif_le);
            memcpy(o + 2 + e, jpg + 2, n - 2);
            put("jpeg", name, o, n + e);
            free(o);
        }
    } else {
        put("jpeg", name, jpg, n);
    }
    if (jpg) tjFree(jpg);
    if (tj) tjDestroy(tj);
    free(px);
}

static void jpegs(void) {
    jpeg("color-420.jpg", 32, 24, TJPF_RGB, TJSAMP_420, 85, 0, 0, 0);
    jpeg("color-444.jpg", 16, 16, TJPF_RGB, TJSAMP_444, 95, 0, 0, 0);
    jpeg("color-422-odd.jpg", 33, 17, TJPF_RGB, TJSAMP_422, 75, 0, 0, 0);
    jpeg("color-440.jpg", 18, 27, TJPF_RGB, TJSAMP_440, 80, 0, 0, 0);
    jpeg("color-411.jpg", 40, 9, TJPF_RGB, TJSAMP_411, 70, 0, 0, 0);
    jpeg("gray.jpg", 20, 20, TJPF_GRAY, TJSAMP_GRAY, 90, 0, 0, 0);
    jpeg("progressive.jpg", 40, 30, TJPF_RGB, TJSAMP_420, 85, TJFLAG_PROGRESSIVE, 0, 0);
    jpeg("progressive-gray.jpg", 24, 24, TJPF_GRAY, TJSAMP_GRAY, 85, TJFLAG_PROGRESSIVE, 0, 0);
    jpeg("cmyk.jpg", 16, 16, TJPF_CMYK, TJSAMP_444, 90, 0, 0, 0);
    jpeg("cmyk-progressive.jpg", 24, 16, TJPF_CMYK, TJSAMP_420, 90, TJFLAG_PROGRESSIVE, 0, 0);
    jpeg("exif-6-be.jpg", 24, 16, TJPF_RGB, TJSAMP_420, 85, 0, 6, 0);
    jpeg("exif-8-le.jpg", 16, 24, TJPF_GRAY, TJSAMP_GRAY, 85, TJFLAG_PROGRESSIVE, 8, 1);
    jpeg("exif-3-le.jpg", 20, 12, TJPF_RGB, TJSAMP_444, 85, 0, 3, 1);
    jpeg("exif-5-be.jpg", 9, 14, TJPF_RGB, TJSAMP_422, 85, 0, 5, 0);
    jpeg("1x1.jpg", 1, 1, TJPF_RGB, TJSAMP_444, 90, 0, 0, 0);
    jpeg("wide-64x2.jpg", 64, 2, TJPF_RGB, TJSAMP_420, 80, 0, 0, 0);
    jpeg("tall-2x64.jpg", 2, 64, TJPF_GRAY, TJSAMP_GRAY, 80, 0, 0, 0);
}

/* ---- IDX ---- */

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* One fuzz input: flags, labels length, labels file, images file (layout in fuzz-util.h). */
static void idx(const char *name, int count, int h, int w, int flags, int pregzip) {
    size_t ni = 16 + (size_t)count * h * w, nl = 8 + (size_t)count;
    uint8_t *img = malloc(ni), *lab = malloc(nl);
    if (!img || !lab) abort();
    be32(img, 0x803), be32(img + 4, (uint32_t)count), be32(img + 8, (uint32_t)h);
    be32(img + 12, (uint32_t)w);
    be32(lab, 0x801), be32(lab + 4, (uint32_t)count);
    for (size_t i = 16; i < ni; i++) img[i] = (uint8_t)(i * 29);
    for (int i = 0; i < count; i++) lab[8 + i] = (uint8_t)(i % 3);
    uint8_t *li = lab, *ii = img;
    size_t lin = nl, iin = ni;
    if (pregzip) { /* the gzip stream itself is then what the fuzzer mutates */
        li = fuzz_gzip(lab, nl, &lin);
        ii = fuzz_gzip(img, ni, &iin);
        if (!li || !ii) abort();
    }
    uint8_t *f = malloc(FUZZ_IDX_HEADER + lin + iin);
    if (!f) abort();
    f[0] = (uint8_t)flags;
    for (int k = 0; k < 4; k++) f[1 + k] = (uint8_t)(lin >> (8 * k));
    memcpy(f + FUZZ_IDX_HEADER, li, lin);
    memcpy(f + FUZZ_IDX_HEADER + lin, ii, iin);
    put("idx", name, f, FUZZ_IDX_HEADER + lin + iin);
    if (pregzip) free(li), free(ii);
    free(f);
    free(img);
    free(lab);
}

static void idxs(void) {
    idx("plain-3x4x5", 3, 4, 5, 0, 0);
    idx("gz-both-4x3x3", 4, 3, 3, FUZZ_IDX_GZ_IMAGES | FUZZ_IDX_GZ_LABELS, 0);
    idx("gz-images-2x6x2", 2, 6, 2, FUZZ_IDX_GZ_IMAGES, 0);
    idx("gz-stream-5x2x2", 5, 2, 2, 0, 1);
    idx("one-1x1", 1, 1, 1, 0, 0);
}

/* ---- models ---- */

static const char *custom_models[][2] = {
    {"every-layer.kiln", "# every device node type once\n"
                         "var input_h = 16\nvar input_w = 16\nvar input_c = 3\nvar classes = 5\n"
                         "var width = 8\n"
                         "image = input(shape={input_h}x{input_w}x{input_c}, dtype=u8)\n"
                         "norm = normalize(image, mean=[120, 115, 100], std=[60, 61, 62])\n"
                         "c1 = conv2d(norm, filters={width}, kernel=3x5, stride=1, "
                         "padding=1x2, dilation=1, groups=1, bias=true, init=lecun)\n"
                         "b1 = batchnorm(c1, eps=1e-3, momentum=0.05)\n"
                         "r1 = leaky_relu(b1, alpha=0.1)\n"
                         "c2 = conv2d(r1, filters={width}, kernel=3, padding=same, groups=2)\n"
                         "e2 = elu(c2, alpha=1)\n"
                         "s2 = add(r1, e2)\n"
                         "l2 = lrn(s2, size=3, alpha=1e-4, beta=0.75, k=2)\n"
                         "p2 = maxpool(l2, pool=3, stride=2, padding=1, ceil=false)\n"
                         "a2 = avgpool(l2, pool=2, count_include_pad=false)\n"
                         "q2 = avgpool(p2, pool=1)\n"
                         "cat = concat(q2, a2)\n"
                         "t = tanh(cat)\n"
                         "g = gelu(t)\n"
                         "sg = sigmoid(g)\n"
                         "f = flatten(sg)\n"
                         "rs = reshape(f, shape=1024)\n"
                         "d1 = dense(rs, units=32, bias=false, init=glorot)\n"
                         "dr = dropout(d1, rate=0.25)\n"
                         "logits = dense(dr, units={classes})\n"
                         "sm = softmax(logits)\n"
                         "output(sm)\n"},
    {"pipeline.kiln", "image = input(shape=32x32x3, dtype=u8)\n"
                      "rrc = random_resized_crop(image, size=24, scale=[0.3, 1], "
                      "ratio=[0.5, 2])\n"
                      "flip = random_flip(rrc, mode=both)\n"
                      "rot = random_rotation(flip, degrees=15)\n"
                      "tr = random_translation(rot, fraction=0.1)\n"
                      "br = random_brightness(tr, delta=0.2)\n"
                      "co = random_contrast(br, factor=0.3)\n"
                      "sa = random_saturation(co, factor=0.3)\n"
                      "er = random_erasing(sa, p=0.5, scale=[0.02, 0.2])\n"
                      "cr = random_crop(er, padding=2, size=20, pad_mode=reflect)\n"
                      "scaled = rescale(cr, scale=1/255, offset=-0.5)\n"
                      "c = conv2d(scaled, filters=4, kernel=3)\n"
                      "r = relu(c)\n"
                      "gap = global_avg_pool(r)\n"
                      "logits = dense(gap, units={classes})\n"
                      "output(logits)\n"},
    {"resize.kiln", "var classes = 3\n"
                    "image = input(shape=40x30x1)\n"
                    "rz = resize(image, size=20)\n"
                    "cc = center_crop(rz, size=16x12)\n"
                    "s = rescale(cc)\n"
                    "c = conv2d(s, filters=2, kernel=1, padding=0x0x1x1,\n"
                    "           stride=2)\n"
                    "f = flatten(c)\n"
                    "logits = dense(f, units={classes})\n"
                    "output(logits)\n"},
    {"f32-input.kiln", "x = input(shape=8x8x2, dtype=f32)\n"
                       "c = conv2d(x, filters=3, kernel=3, padding=same)\n"
                       "p = maxpool(c, pool=2)\n"
                       "g = global_avg_pool(p)\n"
                       "o = dense(g, units={classes})\n"
                       "output(o)\n"},
    {"unused-node.kiln", "# the story: the rescaled input is never read (a lint error)\n"
                         "image  = input(shape=28x28x1, dtype=u8)\n"
                         "flip   = random_flip(image, mode=horizontal)\n"
                         "scaled = rescale(flip, scale=1/255)\n"
                         "c1     = conv2d(image, filters=4, kernel=3, padding=same)\n"
                         "f      = flatten(c1)\n"
                         "logits = dense(f, units=10)\n"
                         "output(logits)\n"},
};

/* The zoo files the library embeds, read from the source tree. */
static void models(void) {
    for (int i = 0; kiln_model_zoo_name(i); i++) {
        char name[128], path[1024];
        snprintf(name, sizeof name, "%s.kiln", kiln_model_zoo_name(i));
        snprintf(path, sizeof path, "%s/%s", KILN_ZOO_DIR, name);
        FILE *f = fopen(path, "rb");
        char text[65536];
        size_t n = f ? fread(text, 1, sizeof text, f) : 0;
        if (!f || ferror(f) || n == sizeof text) {
            fprintf(stderr, "make-seeds: cannot read %s\n", path);
            failed++;
        } else {
            put("model", name, text, n);
        }
        if (f) fclose(f);
    }
    for (size_t i = 0; i < sizeof custom_models / sizeof custom_models[0]; i++)
        put("model", custom_models[i][0], custom_models[i][1], strlen(custom_models[i][1]));
}

/* ---- checkpoints ---- */

static void checkpoint(const char *name, const kiln_ckpt_tensor *t, int n,
                       const char *const *meta) {
    char path[1024];
    snprintf(path, sizeof path, "%s/checkpoint/%s", out_dir, name);
    if (kiln_checkpoint_save(path, t, n, meta) != KILN_OK) {
        fprintf(stderr, "make-seeds: %s\n", kiln_last_error());
        failed++;
        return;
    }
    written++;
}

static void checkpoints(void) {
    kiln_backend_t be = fuzz_cpu_backend();
    kiln_ckpt_tensor t[FUZZ_CKPT_TENSORS];
    kiln_tensor s[FUZZ_CKPT_TENSORS];
    if (!be || fuzz_ckpt_tensors(be, t, s) != KILN_OK) {
        fprintf(stderr, "make-seeds: checkpoint tensors: %s\n", kiln_last_error());
        failed++;
    } else {
        const char *meta[] = {"format", "kiln-trainer-1", "epoch",        "3", "global_step",
                              "42",     "model",          "vgg16-narrow", NULL};
        checkpoint("all.safetensors", t, FUZZ_CKPT_TENSORS, meta);
        checkpoint("no-metadata.safetensors", t, FUZZ_CKPT_TENSORS, NULL);
        checkpoint("one.safetensors", t + 1, 1, meta);
        checkpoint("empty.safetensors", t, 0, meta);
    }
    for (int i = 0; be && i < FUZZ_CKPT_TENSORS; i++) kiln_tensor_release(&s[i]);
    kiln_backend_free(be);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make-seeds OUT\n");
        return 2;
    }
    out_dir = argv[1];
    static const char *kinds[] = {"", "/jpeg", "/idx", "/model", "/checkpoint"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s%s", out_dir, kinds[i]);
        if (mkdir(path, 0755) && errno != EEXIST) {
            fprintf(stderr, "make-seeds: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    jpegs();
    idxs();
    models();
    checkpoints();
    printf("make-seeds: %d seeds in %s%s\n", written, out_dir, failed ? " (with failures)" : "");
    return failed ? 1 : 0;
}
