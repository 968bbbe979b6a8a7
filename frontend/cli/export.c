/* `kiln export`: a checkpoint's inference graph as an ONNX file (kiln/onnx.h). The model is
   sized as kiln predict sizes it: input and classes from the checkpoint's metadata unless
   given. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kiln/model.h"
#include "kiln/onnx.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln export --model M --checkpoint CKPT --onnx OUT.onnx [--input HxW[xC]]\n"
               "                   [--classes N] [--softmax]\n"
               "\n"
               "Writes the model's inference graph with the checkpoint's weights as ONNX (opset\n"
               "17): augmentation and dropout removed, rescale/normalize as Mul/Add and Sub/Div,\n"
               "batch norm as BatchNormalization over the running statistics. The input is\n"
               "float32 NCHW [N, C, H, W] with a dynamic batch N, holding pixel values as kiln's\n"
               "loader delivers them (0-255) after the eval transform; the output is [N, classes]\n"
               "logits (probabilities with --softmax). The mapping: frontend/ONNX.md.\n"
               "\n"
               "  --model NAME|FILE  the model the checkpoint was trained with\n"
               "  --checkpoint CKPT  e.g. runs/vgg16-narrow/best.safetensors\n"
               "  --onnx OUT.onnx    the file to write\n"
               "  --input HxW[xC]    model input size (default: the checkpoint's)\n"
               "  --classes N        class count (default: the checkpoint's)\n"
               "  --softmax          end with Softmax: probabilities instead of logits\n");
}

static int usage_error(const char *what, const char *arg) {
    fprintf(stderr, "kiln export: %s '%s'\n\n", what, arg ? arg : "(missing)");
    usage(stderr);
    return 2;
}

int kiln_cmd_export(int argc, char **argv) {
    const char *model = NULL, *checkpoint = NULL, *out = NULL;
    int h = 0, w = 0, c = 0, classes = 0;
    kiln_onnx_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--softmax")) {
            o.softmax = 1;
            continue;
        }
        int known = !strcmp(a, "--model") || !strcmp(a, "--checkpoint") || !strcmp(a, "--onnx") ||
                    !strcmp(a, "--input") || !strcmp(a, "--classes");
        if (!known) return usage_error("unknown argument", a);
        if (!v) return usage_error("missing value for", a);
        i++;
        long long k = 0;
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--checkpoint"))
            checkpoint = v;
        else if (!strcmp(a, "--onnx"))
            out = v;
        else if (!strcmp(a, "--input") ? kiln_cli_parse_input(v, &h, &w, &c)
                                       : kiln_cli_parse_int(v, 1, 1 << 24, &k))
            return usage_error("bad value for", a);
        if (!strcmp(a, "--classes")) classes = (int)k;
    }
    const char *missing = !model        ? "--model"
                          : !checkpoint ? "--checkpoint"
                          : !out        ? "--onnx"
                                        : NULL;
    if (missing) return usage_error("missing required option", missing);

    kiln_model_t m = NULL;
    kiln_onnx_info info;
    kiln_status st = kiln_cli_checkpoint_shape(checkpoint, &h, &w, &c, &classes);
    if (!st) st = kiln_model_load(model, &m);
    kiln_model_config cfg = {h, w, c, classes, 1};
    if (!st) st = kiln_model_finalize(m, &cfg);
    if (!st) st = kiln_onnx_export(m, checkpoint, &o, out, &info);
    kiln_model_free(m);
    if (st) {
        fprintf(stderr, "kiln export: %s\n", kiln_last_error());
        return 1;
    }
    double mb = (double)info.bytes / 1e6;
    printf("wrote %s: %d ONNX nodes (opset 17), %lld values from the checkpoint, %.*f %s\n"
           "  input  '%s' float32 [N, %d, %d, %d] (NCHW pixel values 0-255 after the eval "
           "transform)\n"
           "  output '%s' float32 [N, %d] (%s)\n",
           out, info.nodes, (long long)info.params, mb < 1 ? 0 : 1, mb < 1 ? mb * 1e3 : mb,
           mb < 1 ? "kB" : "MB", info.input, info.in_c, info.in_h, info.in_w, info.output,
           info.classes, o.softmax ? "probabilities" : "logits");
    return 0;
}
