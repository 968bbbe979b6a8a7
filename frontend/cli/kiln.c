/* The `kiln` command line. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "kiln/kiln.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln <command> [options]\n"
               "\n"
               "commands:\n"
               "  devices              list OpenCL platforms and devices, and what the\n"
               "                       environment (KILN_BACKEND, KILN_DEVICE) selects, and why\n"
               "  bench [all|gemm|conv|peak]  the perf suite on every device and backend, or one\n"
               "                       benchmark; bench --compare OLD NEW (kiln bench --help)\n"
               "  tune --model M       fill the auto backend's tuning cache for a model\n"
               "  data bench|preview|pack|info|gen  the data pipeline (kiln data --help)\n"
               "  summary --model M    the model's layers, shapes, parameters and FLOPs\n"
               "  lint MODEL...        the model checks (unused nodes, raw pixels...); models\n"
               "                       are zoo names, model files, Keras .keras or .json\n"
               "  train --model M --data SRC   train a model (kiln train --help)\n"
               "  eval --model M --data SRC --checkpoint F   accuracy of a checkpoint\n"
               "  predict --model M --checkpoint F IMAGE...  top-k classes of images\n"
               "  export --model M --checkpoint F --onnx OUT.onnx   the inference graph as ONNX\n"
               "  version              print the version\n"
               "\n"
               "environment: KILN_BACKEND=cpu|opencl|clblast|auto[,OP=BACKEND...]\n"
               "             KILN_DEVICE=INDEX|PLATFORM:DEVICE|NAME-SUBSTRING\n"
               "             KILN_CACHE_DIR=DIR|off   KILN_LOG=error|warn|info|debug\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kiln %s\n", KILN_VERSION_STRING);
        return 0;
    }
    if (kiln_log_init_from_env() != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", kiln_last_error());
        return 2;
    }
    if (!strcmp(cmd, "devices")) return kiln_cmd_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return kiln_cmd_bench(argc - 1, argv + 1, argv[0]);
    if (!strcmp(cmd, "data")) return kiln_cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "summary")) return kiln_cmd_summary(argc - 1, argv + 1);
    if (!strcmp(cmd, "lint")) return kiln_cmd_lint(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return kiln_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return kiln_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune")) return kiln_cmd_tune(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return kiln_cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return kiln_cmd_export(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
