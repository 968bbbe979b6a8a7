/* `kiln bench`: the whole suite, or one benchmark, or the regression gate. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

int kiln_cmd_bench(int argc, char **argv, const char *self) {
    /* Benchmarks re-run this executable (cold/warm processes, the data pipeline). */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        self = exe;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--compare")) return kiln_bench_compare(argc, argv);
    if (argc < 2 || argv[1][0] == '-' || !strcmp(argv[1], "all"))
        return kiln_bench_suite(argc, argv, self);
    if (!strcmp(argv[1], "gemm")) return kiln_bench_gemm(argc - 1, argv + 1, self);
    if (!strcmp(argv[1], "conv")) return kiln_bench_conv(argc - 1, argv + 1, self);
    if (!strcmp(argv[1], "peak")) return kiln_bench_peak_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[1], "scale")) return kiln_bench_scale(argc - 1, argv + 1);
    if (!strcmp(argv[1], "cache-probe")) return kiln_bench_cache_probe();
    if (!strcmp(argv[1], "first-step")) return kiln_bench_first_step(argc - 1, argv + 1);
    fprintf(
        stderr,
        "kiln bench: unknown benchmark '%s' (available: all, gemm, conv, peak, scale; kiln bench "
        "--help)\n",
        argv[1]);
    return 2;
}
