/* Internal: the `kiln` command's subcommands. Each returns the process exit code:
   0 success, 1 failure, 2 usage error. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "kiln/dist.h"
#include "kiln/status.h"

int kiln_cmd_devices(int argc, char **argv);
int kiln_cmd_bench(int argc, char **argv, const char *self);
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

/* Shared flag parsers (0 on success): an integer in [lo, hi]; HxW or HxWxC (c = 0 when absent). */
int kiln_cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int kiln_cli_parse_input(const char *s, int *h, int *w, int *c);
/* The input size (HxWxC) and class count a checkpoint written by kiln train was trained for
   (its metadata); values already nonzero (from --input, --classes) are kept. */
kiln_status kiln_cli_checkpoint_shape(const char *path, int *height, int *width, int *channels,
                                      int *classes);

/* Data parallelism: joins the job mpirun started (a world of one otherwise) and sets this
   rank's KILN_DEVICE; the data workers of one rank when the user gave none (the host's cores
   shared by its ranks); a failure's message on stderr, naming rank and host, ending every rank
   of the job (returns 1 alone). Errors are printed. */
int kiln_cli_dist_start(const char *cmd, kiln_dist_t *out); /* 0: joined */
int kiln_cli_dist_workers(kiln_dist_t d, int workers);
int kiln_cli_dist_fail(kiln_dist_t d, const char *cmd);

#endif
