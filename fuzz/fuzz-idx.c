/* The IDX reader: an images file and a labels file (each plain or gzipped) written to disk and
   opened as a dataset, then the first and last samples decoded at 1 and 3 channels. The input
   layout is in fuzz-util.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "kiln/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static int put(const char *path, const uint8_t *p, size_t n, int gz) {
    if (!gz) return fuzz_write_file(path, p, n);
    size_t zn = 0;
    uint8_t *z = fuzz_gzip(p, n, &zn);
    if (!z) abort();
    int rc = fuzz_write_file(path, z, zn);
    free(z);
    return rc;
}

static void decode(kiln_dataset_t ds, size_t i) {
    for (int c = 1; c <= 3; c += 2) {
        uint8_t *px = NULL;
        int w = 0, h = 0;
        if (kiln_dataset_decode(ds, i, c, &px, &w, &h) == KILN_OK) {
            volatile uint8_t sink = px[(size_t)w * (size_t)h * (size_t)c - 1];
            (void)sink;
        }
        free(px);
    }
    (void)kiln_dataset_label(ds, i);
    (void)strlen(kiln_dataset_sample_name(ds, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *dir = fuzz_tmpdir();
    if (!dir) abort();
    if (n < FUZZ_IDX_HEADER) return 0;
    uint32_t ln = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                  (uint32_t)data[4] << 24;
    size_t rest = n - FUZZ_IDX_HEADER, lab = ln < rest ? ln : rest;
    char images[512], labels[512];
    strcpy(images, fuzz_path(dir, "f-images-idx3-ubyte"));
    strcpy(labels, fuzz_path(dir, "f-labels-idx1-ubyte"));
    const uint8_t *p = data + FUZZ_IDX_HEADER;
    if (put(labels, p, lab, data[0] & FUZZ_IDX_GZ_LABELS) ||
        put(images, p + lab, rest - lab, data[0] & FUZZ_IDX_GZ_IMAGES))
        abort();
    kiln_dataset_options o;
    kiln_dataset_options_init(&o);
    o.path = images; /* the labels file name is derived from it */
    kiln_dataset_t ds = NULL;
    if (kiln_dataset_open(&o, &ds) != KILN_OK) return 0;
    size_t count = kiln_dataset_size(ds);
    for (int c = -1; c <= kiln_dataset_num_classes(ds); c++)
        (void)strlen(kiln_dataset_class_name(ds, c));
    decode(ds, 0);
    decode(ds, count - 1);
    kiln_dataset_free(ds);
    return 0;
}
