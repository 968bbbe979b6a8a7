/* ONNX export: the inference graph of a finalized model (kiln/model.h) with the weights of a
   checkpoint written by kiln train, as an ONNX model (opset 17, IR version 8) that
   onnxruntime, TensorRT or OpenVINO load directly. frontend/ONNX.md has the node mapping.

   - Input: the model's input node, float32 NCHW [N, C, H, W] with a dynamic batch N ("N"),
     holding the pixel values as kiln's loader delivers them (0-255 for a u8 input, gray or RGB
     as the model reads) after the data pipeline's eval transform (decode, resize, center crop:
     host-side steps that are not part of the graph). The uint8 -> float conversion is the
     caller's (a float input is what converters and runtimes expect; a Cast would force u8
     tensors on every caller).
   - Training-only nodes are dropped (augmentation, dropout); rescale / normalize stay as
     Mul/Add and Sub/Div over initializers; batch norm is BatchNormalization over the running
     statistics (inference mode, not folded into the convolution: runtimes fold it themselves
     and the exported graph keeps kiln's layers one to one).
   - Output: the first declared output, [N, classes] logits, or probabilities with softmax.

   Initializers carry the checkpoint's names ("conv1.weight", "fc6.bias"; batch norm's
   running statistics split into "<node>.running_mean" / "<node>.running_var"). */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include "kiln/model.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_onnx_options {
    int softmax; /* append Softmax over the classes: the output is probabilities */
} kiln_onnx_options;

typedef struct kiln_onnx_info {
    int nodes;      /* ONNX nodes written */
    int64_t params; /* initializer elements from the checkpoint */
    int64_t bytes;  /* file size */
    int in_c, in_h, in_w, classes;
    char input[KILN_MODEL_MAX_NAME], output[KILN_MODEL_MAX_NAME + 16];
} kiln_onnx_info;

/* Writes `m` (finalized for the checkpoint's input size and classes) with the parameters of
   `checkpoint` to `path`, atomically. A node without an ONNX equivalent fails with
   KILN_UNSUPPORTED and "file:line: node 'name' (type): ..."; missing or mis-shaped
   checkpoint entries fail as kiln_checkpoint_load does, naming the entry. `o` may be NULL
   (logits); `info` may be NULL. */
kiln_status kiln_onnx_export(kiln_model_t m, const char *checkpoint, const kiln_onnx_options *o,
                             const char *path, kiln_onnx_info *info);

#ifdef __cplusplus
}
#endif
#endif
