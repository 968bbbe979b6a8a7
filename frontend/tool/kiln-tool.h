/* Internal: helpers the `kiln` command (frontend/cli) and the benchmarks (perf) share -- flag
   parsers and the command-line side of data parallelism. Built as the kiln_tool library; not
   installed. */
#ifndef KILN_TOOL_H
#define KILN_TOOL_H

#include "kiln/dist.h"
#include "kiln/status.h"

/* Shared flag parsers (0 on success): an integer in [lo, hi]; HxW or HxWxC (c = 0 when absent). */
int kiln_cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int kiln_cli_parse_input(const char *s, int *h, int *w, int *c);

/* Data parallelism: joins the job mpirun started (a world of one otherwise) and sets this
   rank's KILN_DEVICE; the data workers of one rank when the user gave none (the host's cores
   shared by its ranks); a failure's message on stderr, naming rank and host, ending every rank
   of the job (returns 1 alone). Errors are printed. */
int kiln_cli_dist_start(const char *cmd, kiln_dist_t *out); /* 0: joined */
int kiln_cli_dist_workers(kiln_dist_t d, int workers);
int kiln_cli_dist_fail(kiln_dist_t d, const char *cmd);

#endif
