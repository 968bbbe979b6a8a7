/* Pieces shared by the fuzz targets and the seed generator: a private scratch directory, whole
   file writes, gzip in memory, the checkpoint tensors the checkpoint target asks for, and a cpu
   backend made without device discovery (so nothing here initialises OpenCL, whose driver keeps
   allocations LeakSanitizer would report). */
#ifndef KILN_FUZZ_UTIL_H
#define KILN_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/backend.h"
#include "kiln/checkpoint.h"

/* A directory private to this process, removed at exit; NULL when none could be made. */
const char *fuzz_tmpdir(void);
/* dir/name; the result lives in a static buffer until the next call. */
const char *fuzz_path(const char *dir, const char *name);
/* 0 on success. */
int fuzz_write_file(const char *path, const void *data, size_t n);
/* gzip-compresses src into a malloc'ed buffer; NULL on failure. */
uint8_t *fuzz_gzip(const uint8_t *src, size_t n, size_t *out_n);
/* The plain-C cpu backend, without listing OpenCL devices. */
kiln_backend_t fuzz_cpu_backend(void);

/* The tensors fuzz-checkpoint loads into and make-seeds saves from: one of each dtype. */
enum { FUZZ_CKPT_TENSORS = 4 };
/* Allocates them on be (names and shapes fixed; values a simple pattern). */
kiln_status fuzz_ckpt_tensors(kiln_backend_t be, kiln_ckpt_tensor out[FUZZ_CKPT_TENSORS],
                              kiln_tensor storage[FUZZ_CKPT_TENSORS]);

/* IDX fuzz input: byte 0 holds flags, bytes 1-4 the labels file's length L (little-endian,
   clamped to what is there), then L bytes of the labels file and the images file. */
enum { FUZZ_IDX_GZ_IMAGES = 1, FUZZ_IDX_GZ_LABELS = 2, FUZZ_IDX_HEADER = 5 };

#endif
