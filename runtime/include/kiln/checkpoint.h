/* Checkpoints in the safetensors format (8-byte little-endian header length, a JSON header,
   then the raw little-endian tensor bytes), so weights open in the Python ecosystem
   (safetensors.numpy.load_file). Writes are atomic: a crash never destroys the previous
   checkpoint. Loading validates the whole file before touching any tensor. */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_ckpt_tensor {
    const char *name;
    kiln_tensor *tensor; /* contiguous; saved from / loaded into */
} kiln_ckpt_tensor;

/* metadata: NULL, or key, value, key, value, ..., NULL (strings, stored in __metadata__). */
kiln_status kiln_checkpoint_save(const char *path, const kiln_ckpt_tensor *tensors, int n,
                                 const char *const *metadata);

/* Checks the header length against the file, the JSON, every entry's dtype, shape and byte
   range (inside the data, no overlaps, no holes, sizes matching shapes), duplicate names, and
   that every requested tensor is present with its dtype and shape, all before reading data
   into any tensor. Errors name the file and the entry. */
kiln_status kiln_checkpoint_load(const char *path, const kiln_ckpt_tensor *tensors, int n);

/* A __metadata__ value of a valid checkpoint (malloc'ed; *value = NULL when absent). */
kiln_status kiln_checkpoint_metadata(const char *path, const char *key, char **value);

#ifdef __cplusplus
}
#endif
#endif
