/* The checkpoint loader: the input is written as a .safetensors file, its metadata read (which
   validates the whole header), then loaded into one tensor of each dtype on the cpu backend. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz-util.h"

static kiln_backend_t be;
static kiln_ckpt_tensor tensors[FUZZ_CKPT_TENSORS];
static kiln_tensor storage[FUZZ_CKPT_TENSORS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    be = fuzz_cpu_backend();
    if (!be || fuzz_ckpt_tensors(be, tensors, storage) != KILN_OK || !fuzz_tmpdir()) {
        fprintf(stderr, "fuzz-checkpoint: setup failed: %s\n", kiln_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s", fuzz_path(fuzz_tmpdir(), "f.safetensors"));
    if (fuzz_write_file(path, data, n)) abort();
    char *v = NULL;
    if (kiln_checkpoint_metadata(path, "epoch", &v) == KILN_OK) free(v);
    (void)kiln_checkpoint_load(path, tensors, FUZZ_CKPT_TENSORS);
    (void)kiln_checkpoint_load(path, tensors + 1, 1);
    return 0;
}
