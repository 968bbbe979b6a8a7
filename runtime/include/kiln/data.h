/* The data pipeline: sources (class-folder JPEG directories, IDX files, tar shards), JPEG
   decoding with TurboJPEG, augmentation on a persistent worker pool that fills a bounded ring
   of preallocated uint8 NHWC batches, and a double-buffered uploader to a backend.

   Determinism: the order of an epoch is a permutation drawn from (seed, epoch); every sample's
   random stream is derived from (seed, epoch, sample index) by a counter-based generator. The
   same seed gives bit-identical batches whatever the worker count, and after seeking to any
   (epoch, step).

   Augmentation spec: comma-separated tokens, each NAME[:ARG[:ARG...]]. Geometry tokens build
   one crop box in source coordinates and one output size; they are resolved first, in order,
   with a single resample (DCT-domain scaled decode, then a separable triangle filter, which is
   PIL's antialiased bilinear). Pixel tokens then run in order on the output image.
     geometry:
       rrc:S[:SMIN-SMAX[:RMIN-RMAX]]  random resized crop to SxS (scale 0.08-1, ratio 0.75-1.333
                                      default; 10 attempts, then a center crop); must come first
       resize:N                       shorter side to N, aspect kept
       size:N | size:WxH              stretch to NxN / WxH
       center:N | center:WxH          center crop (the evaluation transform: resize:256,center:224)
       crop:N | crop:WxH              random crop of that size (no scaling)
     pixel:
       flip:h|v|hv[:P]                flip each axis with probability P (default 0.5)
       padcrop:P                      CIFAR style: zero-pad P pixels, random crop back to size
       rotate:F[:FILL]                Keras RandomRotation: angle uniform in [-F, F] x 2 pi
       translate:F[:FILL]             shift uniform in [-F, F] x width/height
                                      FILL = constant|reflect|wrap|nearest (default reflect,
                                      like Keras)
       jitter:B[:C[:S]]               brightness/contrast/saturation factors uniform in
                                      [1-x, 1+x] (C and S default to B)
       erase:P                        random erasing with probability P (area 0.02-0.33, ratio
                                      0.3-3.3, random fill)
       cutout:N                       one NxN zero square at a random center
   A spec without a fixed output size (no rrc/size/center/crop) is only valid on sources whose
   images all have one size (IDX). Errors name the bad token. */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/backend.h"
#include "kiln/status.h"
#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_dataset *kiln_dataset_t;
typedef struct kiln_loader *kiln_loader_t;
typedef struct kiln_uploader *kiln_uploader_t;

typedef enum { KILN_SPLIT_ALL, KILN_SPLIT_TRAIN, KILN_SPLIT_VAL } kiln_split;

typedef struct kiln_dataset_options {
    /* A directory of class folders of JPEGs (.jpg/.jpeg, any case, searched recursively);
       an IDX images file (…-images-idx3-ubyte[.gz]); a .tar shard or a directory of .tar
       shards written by `kiln data pack` (members KEY.jpg + KEY.cls, classes.txt beside). */
    const char *path;
    /* IDX labels file; NULL derives it from the images file name (images-idx3 -> labels-idx1). */
    const char *labels_path;
    /* Seeded validation split: a sample is in VAL when hash(split_seed, its name) falls below
       val_fraction, so the split is stable when files are added. KILN_SPLIT_ALL ignores it. */
    kiln_split split;
    double val_fraction;
    uint64_t split_seed;
    /* Limits against hostile files (0 = defaults: 64 MiB, 100 Mpixel, 32768 per side). */
    size_t max_file_bytes;
    uint64_t max_pixels;
    int max_side;
} kiln_dataset_options;

void kiln_dataset_options_init(kiln_dataset_options *o);
kiln_status kiln_dataset_open(const kiln_dataset_options *o, kiln_dataset_t *out);
void kiln_dataset_free(kiln_dataset_t ds);
size_t kiln_dataset_size(kiln_dataset_t ds);
int kiln_dataset_num_classes(kiln_dataset_t ds);
const char *kiln_dataset_class_name(kiln_dataset_t ds, int cls);
int kiln_dataset_label(kiln_dataset_t ds, size_t i);
/* "class/file.jpg", "shard-000001.tar:00000042.jpg", "train-images-idx3-ubyte.gz[17]". */
const char *kiln_dataset_sample_name(kiln_dataset_t ds, size_t i);
/* "jpeg-dir", "idx", "tar". */
const char *kiln_dataset_kind(kiln_dataset_t ds);
/* Native channels: 1 for IDX, 3 for JPEG sources. */
int kiln_dataset_channels(kiln_dataset_t ds);

/* Decodes sample i at its own size (EXIF orientation applied) into a malloc'ed HWC buffer.
   channels: 1 or 3. Errors name the file. */
kiln_status kiln_dataset_decode(kiln_dataset_t ds, size_t i, int channels, uint8_t **pixels,
                                int *width, int *height);

/* Checks every sample of a dataset in turn (`kiln data info`): a scan decodes each JPEG file
   whole (at 1/8 scale: the entropy decoding still sees all of it) and reports its size after
   EXIF orientation; IDX samples all have the file's size. accept_warnings: libjpeg warnings
   (recoverable corruption) pass. Errors of one sample leave the scan usable for the next. */
typedef struct kiln_dataset_scan *kiln_dataset_scan_t;
kiln_status kiln_dataset_scan_create(kiln_dataset_t ds, int accept_warnings,
                                     kiln_dataset_scan_t *out);
kiln_status kiln_dataset_scan_sample(kiln_dataset_scan_t s, size_t i, int *width, int *height);
void kiln_dataset_scan_free(kiln_dataset_scan_t s);

/* Writes the samples of a JPEG source as tar shards OUT/shard-NNNNNN.tar of about shard_bytes
   (0 = 256 MiB) each, members NNNNNNNN.jpg + NNNNNNNN.cls (class index as text), and
   OUT/classes.txt (class names, one a line). Files are copied verbatim, bad ones included. */
kiln_status kiln_data_pack(kiln_dataset_t ds, const char *out_dir, uint64_t shard_bytes,
                           int *shards_written);

/* ---- image helpers for tools ---- */

/* Converts n pixels from sc to dc channels, each 1 or 3 (gray = BT.601 luma); src and dst may
   be the same buffer. */
void kiln_convert_channels(const uint8_t *src, int n, int sc, uint8_t *dst, int dc);
/* Encodes a w x h HWC image (channels 1: grayscale, 3: RGB, 4:2:0) as JPEG at quality 1..100
   with TurboJPEG into a malloc'ed buffer. */
kiln_status kiln_jpeg_encode(const uint8_t *pixels, int w, int h, int channels, int quality,
                             uint8_t **jpg, size_t *n);

/* ---- augmentation spec ---- */

typedef struct kiln_augment *kiln_augment_t;
/* Parses a spec (syntax above). Errors (KILN_INVALID_ARGUMENT) quote the bad token. */
kiln_status kiln_augment_parse(const char *spec, kiln_augment_t *out);
void kiln_augment_free(kiln_augment_t a);
/* Output size fixed by the spec, or 0/0 when it depends on the image. */
void kiln_augment_output_size(kiln_augment_t a, int *width, int *height);
/* Applies the spec to one HWC image with the random stream of (seed, epoch, index); out must
   hold out_w * out_h * channels bytes where out_w/out_h are the spec's size (or the input's). */
kiln_status kiln_augment_apply(kiln_augment_t a, const uint8_t *src, int w, int h, int channels,
                               uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *out,
                               int out_w, int out_h);

/* ---- loader ---- */

typedef enum { KILN_ON_ERROR_SKIP, KILN_ON_ERROR_FAIL } kiln_on_error;

typedef struct kiln_loader_options {
    kiln_dataset_t dataset; /* borrowed; must outlive the loader */
    const char *augment;    /* spec; NULL or "" = none */
    int batch;              /* samples per batch (default 32) */
    int workers;            /* 0 = online cores */
    int slots;              /* ring size in batches (0 = workers + 2) */
    int channels;           /* 0 = the dataset's; 1 or 3 */
    uint64_t seed;
    int shuffle;            /* default 1 */
    int drop_last;          /* default 0: the last batch of an epoch may be short */
    int rank, world_size;   /* rank r takes samples r, r + W... of each epoch's order; with
                               drop_last all ranks take the same count, without it the ranks
                               together take every sample */
    kiln_on_error on_error; /* skip (default): count, log, replace; fail: stop */
    int accept_warnings;    /* 1: decoder warnings (recoverable corruption) are not errors */
    int fast_decode;        /* 1: TurboJPEG's fast IDCT and chroma upsampling (less exact) */
} kiln_loader_options;

typedef struct kiln_batch {
    const uint8_t *images; /* n x height x width x channels, uint8 */
    const int32_t *labels;
    int n, height, width, channels;
    int64_t epoch, step; /* step within the epoch */
} kiln_batch;

/* Where the workers' time goes, per sample: reading the file and its header (IDX: the
   channel conversion), decoding the region, resampling it, the pixel tokens (flip, jitter...). */
enum { KILN_STAGE_READ, KILN_STAGE_DECODE, KILN_STAGE_RESAMPLE, KILN_STAGE_PIXELS, KILN_STAGES };

typedef struct kiln_loader_stats {
    uint64_t images;     /* samples produced */
    uint64_t bad_files;  /* distinct files that failed to decode (each logged once) */
    uint64_t replaced;   /* samples replaced because their file is bad (skip) */
    double wait_seconds; /* consumer time blocked in kiln_loader_next */
    double run_seconds;  /* from the first kiln_loader_next to the latest return */
    double wait_fraction;
    double stage_seconds[KILN_STAGES]; /* worker wall time per stage, summed over workers */
} kiln_loader_stats;

void kiln_loader_options_init(kiln_loader_options *o);
kiln_status kiln_loader_create(const kiln_loader_options *o, kiln_loader_t *out);
void kiln_loader_free(kiln_loader_t ld);
int64_t kiln_loader_steps_per_epoch(kiln_loader_t ld);
void kiln_loader_output_shape(kiln_loader_t ld, int *height, int *width, int *channels);
/* Resume: the next batch is (epoch, step). Discards batches in flight, including batches the
   caller has not released (their memory is reused). */
kiln_status kiln_loader_seek(kiln_loader_t ld, int64_t epoch, int64_t step);
/* Blocks until the next batch is ready. The batch stays valid until kiln_loader_release; at
   most `slots` batches can be held at once. With on_error = fail, a batch holding a bad file
   is returned as KILN_CORRUPT naming the file (the stream goes on after it). */
kiln_status kiln_loader_next(kiln_loader_t ld, kiln_batch *b);
void kiln_loader_release(kiln_loader_t ld, kiln_batch *b);
void kiln_loader_get_stats(kiln_loader_t ld, kiln_loader_stats *s);

/* ---- uploader: double-buffered, batch n+1 is copied while batch n is computed ---- */

kiln_status kiln_uploader_create(kiln_loader_t ld, kiln_backend_t be, kiln_uploader_t *out);
void kiln_uploader_free(kiln_uploader_t up);
/* Returns batch n as u8[n,h,w,c] images and i32[n] labels on the backend (views valid until
   the next call) and starts uploading batch n+1. info (optional) receives the batch's
   metadata (its host pointers are NULL: the host slot is already recycled). */
kiln_status kiln_uploader_next(kiln_uploader_t up, kiln_tensor **images, kiln_tensor **labels,
                               kiln_batch *info);

#ifdef __cplusplus
}
#endif
#endif
