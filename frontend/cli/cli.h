/* Internal: the `kiln` command's subcommands. Each returns the process exit code:
   0 success, 1 failure, 2 usage error. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "kiln-tool.h"
#include "kiln/dist.h"
#include "kiln/status.h"

int kiln_cmd_devices(int argc, char **argv);
int kiln_cmd_data(int argc, char **argv);
int kiln_cmd_summary(int argc, char **argv);
int kiln_cmd_train(int argc, char **argv);
int kiln_cmd_eval(int argc, char **argv);
int kiln_cmd_tune(int argc, char **argv);
int kiln_cmd_predict(int argc, char **argv);
int kiln_cmd_lint(int argc, char **argv);

/* eval/predict of a Keras model.to_json() graph without a checkpoint: prints why and returns 1
   (a usage error: exit 2), else 0. */
int kiln_cli_keras_weights_refused(const char *cmd, const char *model, const char *checkpoint);
/* The checkpoint eval/predict use: the one given, else a .keras model's own weights (NULL when
   neither). */
const char *kiln_cli_default_checkpoint(const char *model, const char *checkpoint);
int kiln_cmd_export(int argc, char **argv);

/* The input size (HxWxC) and class count a checkpoint written by kiln train was trained for
   (its metadata); values already nonzero (from --input, --classes) are kept. */
kiln_status kiln_cli_checkpoint_shape(const char *path, int *height, int *width, int *channels,
                                      int *classes);

#endif
