/* The JPEG source path on one in-memory file: header and limits, EXIF orientation, the
   augmentation geometry, region decoding at a DCT scale, the antialiased resample and the pixel
   tokens, in the order the loader's workers run them (runtime/data/loader.c, make_sample), plus
   the whole-image decode of kiln_dataset_decode. One decoder serves every input, as a worker's
   does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/data-impl.h"

/* Several specs so that both channel counts, every DCT scale, the fill modes and the
   warning-tolerant and fast decode settings are reached from each input. */
static const struct {
    const char *spec;
    int channels, accept_warnings, fast_decode;
} configs[] = {
    {"rrc:24,flip:hv,rotate:0.2:wrap,jitter:0.4,erase:0.5", 3, 0, 0},
    {"resize:20,center:16x12,translate:0.3:constant,cutout:5,padcrop:2", 1, 1, 1},
    {"size:7x9,flip:v:1,rotate:0.5:nearest,jitter:0.2:0.9:1", 3, 1, 0},
    {"rrc:5:0.5-1:0.2-5,translate:0.1:reflect", 1, 0, 1},
};
enum { NCONF = sizeof configs / sizeof configs[0] };

static kiln_decoder *dec;
static kiln_augment_t aug[NCONF];
static kiln_scratch resample_scratch, pixel_scratch, out;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (kiln_decoder_create(&dec) != KILN_OK) abort();
    for (int k = 0; k < NCONF; k++)
        if (kiln_augment_parse(configs[k].spec, &aug[k]) != KILN_OK) {
            fprintf(stderr, "fuzz-jpeg: %s\n", kiln_last_error());
            abort();
        }
    return 0;
}

/* Limits smaller than the dataset defaults (100 Mpixel) keep each run fast; the limit checks
   themselves are the same code. */
static kiln_decode_limits limits(int k) {
    kiln_decode_limits lim = {(uint64_t)1 << 22, 8192, configs[k].accept_warnings,
                              configs[k].fast_decode};
    return lim;
}

static void augmented(const uint8_t *data, size_t n, int k) {
    kiln_decode_limits lim = limits(k);
    kiln_jpeg_info info;
    if (kiln_jpeg_header(dec, data, n, &lim, &info) != KILN_OK) return;
    kiln_rng r = kiln_rng_make(n, (uint64_t)k, 7);
    kiln_geometry g;
    kiln_augment_geometry(aug[k], info.owidth, info.oheight, &r, &g);
    kiln_decoded d;
    int c = configs[k].channels;
    if (kiln_jpeg_decode_box(dec, data, n, &info, &lim, c, g.x, g.y, g.w, g.h, g.out_w, g.out_h,
                             &d) != KILN_OK)
        return;
    size_t bytes = (size_t)g.out_w * (size_t)g.out_h * (size_t)c;
    if (kiln_scratch_grow(&out, bytes) || kiln_scratch_grow(&pixel_scratch, bytes)) abort();
    if (kiln_resample(d.pixels, d.w, d.h, c, d.bx, d.by, d.bw, d.bh, out.p, g.out_w, g.out_h,
                      &resample_scratch) != KILN_OK)
        return;
    kiln_augment_pixels(aug[k], out.p, g.out_w, g.out_h, c, &r, pixel_scratch.p);
}

static void whole(const uint8_t *data, size_t n) {
    kiln_decode_limits lim = limits(0);
    kiln_jpeg_info info;
    kiln_decoded d;
    if (kiln_jpeg_header(dec, data, n, &lim, &info) != KILN_OK) return;
    if (kiln_jpeg_decode_box(dec, data, n, &info, &lim, 3, 0, 0, info.owidth, info.oheight, 0, 0,
                             &d) != KILN_OK)
        return;
    /* Every decoded byte must be initialised (MemorySanitizer would say; here a read makes
       ASan check the extent). */
    volatile uint8_t sink = 0;
    size_t bytes = (size_t)d.w * (size_t)d.h * (size_t)d.channels;
    for (size_t i = 0; i < bytes; i += 61) sink ^= d.pixels[i];
    if (bytes) sink ^= d.pixels[bytes - 1];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    for (int k = 0; k < NCONF; k++) augmented(data, n, k);
    whole(data, n);
    return 0;
}
