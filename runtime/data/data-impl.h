/* Internal: data pipeline pieces shared by sources, decoder, augmentation and loader. */
#ifndef KILN_DATA_IMPL_H
#define KILN_DATA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/data.h"
#include "../shared/kiln-util.h"

/* ---- sources ---- */

typedef enum { KILN_SRC_JPEG_DIR, KILN_SRC_IDX, KILN_SRC_TAR } kiln_src_kind;

typedef struct kiln_sample {
    uint32_t name;  /* offset into names */
    uint32_t shard; /* tar: shard index */
    uint64_t off;   /* tar: byte offset of the member's data; idx: pixel offset */
    uint64_t size;
    int32_t label;
} kiln_sample;

struct kiln_dataset {
    kiln_src_kind kind;
    kiln_dataset_options opt;
    char root[4096];
    kiln_sample *samples;
    size_t count, cap;
    char *names; /* arena of NUL-terminated names */
    size_t names_len, names_cap;
    char **classes;
    int nclasses;
    int *shard_fd; /* tar */
    char **shard_names;
    int nshards;
    uint8_t *idx_pixels; /* idx: all images */
    int idx_w, idx_h;
};

/* Reads the encoded bytes of a file-backed sample into *buf (grown as needed). */
kiln_status kiln_dataset_read_bytes(kiln_dataset_t ds, size_t i, uint8_t **buf, size_t *cap,
                                    size_t *n);

/* ---- decoding ---- */

typedef struct kiln_decoder kiln_decoder;
kiln_status kiln_decoder_create(kiln_decoder **out);
void kiln_decoder_free(kiln_decoder *d);
/* With full set, kiln_jpeg_decode_box decodes every pixel of the image, not just the box's
   region (the tests' reference). */
void kiln_decoder_set_full(kiln_decoder *d, int full);

typedef struct kiln_jpeg_info {
    int width, height;   /* as stored */
    int orientation;     /* EXIF 1..8 (1 when absent) */
    int owidth, oheight; /* after orientation */
    int colorspace;      /* TJCS_* */
    int subsamp;         /* TJSAMP_* */
} kiln_jpeg_info;

/* Parses the EXIF orientation (1..8) from the APP1 segments before the first SOS; 1 when
   absent or malformed. Bounded by n. */
int kiln_exif_orientation(const uint8_t *jpg, size_t n);

typedef struct kiln_decode_limits {
    uint64_t max_pixels;
    int max_side;
    int accept_warnings;
    int fast_decode;
} kiln_decode_limits;

kiln_status kiln_jpeg_header(kiln_decoder *d, const uint8_t *jpg, size_t n,
                             const kiln_decode_limits *lim, kiln_jpeg_info *info);
/* Decodes the box (x, y, w, h), given in oriented coordinates, at the smallest DCT scale 1/N
   (N = 1, 2, 4, 8) that keeps it at least min_w x min_h (0 = full image at full scale). Only the
   region the resampler reads for a min_w x min_h output is decoded (horizontal crop to the
   iMCU grid, rows above skipped, stops after the last row it needs). The result lives in d's
   scratch until the next call: an oriented HWC image (that region) and the box in its
   coordinates. Guarantee (tests/test-data.c): the region's pixels are byte-identical to those
   of a full decode at the same scale, and wherever the resampler reads. Corruption confined to
   rows below the region is not seen when the file ends with its EOI marker (truncation is). */
typedef struct kiln_decoded {
    const uint8_t *pixels;
    int w, h, channels;
    double bx, by, bw, bh; /* the requested box in decoded-image coordinates */
} kiln_decoded;
kiln_status kiln_jpeg_decode_box(kiln_decoder *d, const uint8_t *jpg, size_t n,
                                 const kiln_jpeg_info *info, const kiln_decode_limits *lim,
                                 int channels, double x, double y, double w, double h, int min_w,
                                 int min_h, kiln_decoded *out);

/* ---- augmentation ---- */

/* The crop box and output size of the geometry tokens for a src_w x src_h image. */
typedef struct kiln_geometry {
    double x, y, w, h; /* box in source coordinates */
    int out_w, out_h;
} kiln_geometry;
void kiln_augment_geometry(kiln_augment_t a, int src_w, int src_h, kiln_rng *r, kiln_geometry *g);
/* Runs the pixel tokens on the output image, continuing the sample's stream. */
void kiln_augment_pixels(kiln_augment_t a, uint8_t *img, int w, int h, int c, kiln_rng *r,
                         uint8_t *scratch);
/* A growable scratch buffer owned by one thread. */
typedef struct kiln_scratch {
    uint8_t *p;
    size_t cap;
} kiln_scratch;
kiln_status kiln_scratch_grow(kiln_scratch *s, size_t n);
/* Resamples box (bx, by, bw, bh) of src into dst (dw x dh) with a triangle filter whose support
   grows with the downscale factor (PIL's antialiased bilinear); taps outside the image repeat
   the edge. An integer box of the output's size is copied exactly. */
kiln_status kiln_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by,
                          double bw, double bh, uint8_t *dst, int dw, int dh, kiln_scratch *s);
/* 0: kiln_resample runs its plain C loops even where the CPU has AVX2 (tests compare both). */
void kiln_resample_set_simd(int on);

#endif
