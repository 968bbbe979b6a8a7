/* `kiln bench`: dispatch to the benchmarks. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

int kiln_cmd_bench(int argc, char **argv, const char *self) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: kiln bench gemm|conv|peak [options]   (kiln bench gemm --help)\n");
        return argc < 2 ? 2 : 0;
    }
    /* Benchmarks re-run this executable (cold/warm processes). */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        self = exe;
    }
    if (!strcmp(argv[1], "gemm")) return kiln_bench_gemm(argc - 1, argv + 1, self);
    if (!strcmp(argv[1], "conv")) return kiln_bench_conv(argc - 1, argv + 1, self);
    if (!strcmp(argv[1], "peak")) return kiln_bench_peak_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[1], "cache-probe")) return kiln_bench_cache_probe();
    fprintf(stderr, "kiln bench: unknown benchmark '%s' (available: gemm, conv, peak)\n", argv[1]);
    return 2;
}
