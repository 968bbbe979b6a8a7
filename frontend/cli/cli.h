/* Internal: the `kiln` command's subcommands. Each returns the process exit code:
   0 success, 1 failure, 2 usage error. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

int kiln_cmd_devices(int argc, char **argv);
int kiln_cmd_bench(int argc, char **argv, const char *self);
int kiln_cmd_data(int argc, char **argv);
int kiln_cmd_summary(int argc, char **argv);
int kiln_cmd_train(int argc, char **argv);
int kiln_cmd_eval(int argc, char **argv);

#endif
