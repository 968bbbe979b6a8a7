/* `kiln devices`: every platform and device, and what the environment selects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kiln/kiln.h"

static void human_bytes(unsigned long long b, char *out, size_t n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

int kiln_cmd_devices(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
            printf("usage: kiln devices\n\nLists OpenCL platforms and devices and shows which "
                   "device and backend KILN_BACKEND / KILN_DEVICE select, and why.\n");
            return 0;
        }
        fprintf(stderr, "kiln devices: unknown argument '%s'\nusage: kiln devices\n", argv[1]);
        return 2;
    }
    kiln_device_info *devs = NULL;
    int n = 0;
    if (kiln_devices_list(&devs, &n) != KILN_OK) {
        fprintf(stderr, "kiln devices: %s\n", kiln_last_error());
        return 1;
    }
    kiln_selection sel;
    kiln_status sst = kiln_select(NULL, NULL, &sel);
    printf("OpenCL devices: %d\n", n);
    for (int i = 0; i < n; i++) {
        const kiln_device_info *d = &devs[i];
        char gm[32], lm[32], ma[32];
        human_bytes(d->global_mem, gm, sizeof gm);
        human_bytes(d->local_mem, lm, sizeof lm);
        human_bytes(d->max_alloc, ma, sizeof ma);
        printf("%s [%d] %d:%d  %-4s %s\n", !sst && sel.device_index == i ? "*" : " ", d->index,
               d->platform_index, d->device_index, kiln_device_type_name(d->type), d->name);
        printf("      platform: %s (%s)\n", d->platform, d->platform_version);
        printf("      vendor: %s   driver: %s   %s\n", d->vendor, d->driver_version,
               d->opencl_c_version);
        printf("      compute units: %u   clock: %u MHz   global memory: %s   max alloc: %s   "
               "local memory: %s\n",
               d->compute_units, d->clock_mhz, gm, ma, lm);
        printf("      max work-group: %zu   max work-item sizes: %zux%zux%zu   fp16: %s   fp64: "
               "%s   preferred float vector: %u   multiply-add: %s\n",
               d->max_work_group, d->max_work_item[0], d->max_work_item[1], d->max_work_item[2],
               d->fp16 ? "yes" : "no", d->fp64 ? "yes" : "no", d->pref_vec_float,
               d->fma ? "fma (hardware)" : "mad (no hardware fma)");
    }
    printf("%s [host] cpu backend (plain C + OpenBLAS), always available\n",
           !sst && sel.device_index < 0 ? "*" : " ");
    free(devs);
    printf("\nKILN_BACKEND=%s KILN_DEVICE=%s\n",
           getenv("KILN_BACKEND") ? getenv("KILN_BACKEND") : "(unset: auto)",
           getenv("KILN_DEVICE") ? getenv("KILN_DEVICE") : "(unset)");
    if (sst) {
        fprintf(stderr, "kiln devices: %s\n", kiln_last_error());
        return 1;
    }
    kiln_backend_t be;
    if (kiln_backend_init_from_env(&be) != KILN_OK) {
        fprintf(stderr, "kiln devices: cannot start the selected backend: %s\n", kiln_last_error());
        return 1;
    }
    printf("selected: backend %s on %s\n  why: %s\n  ops:", kiln_backend_name(be),
           kiln_backend_device(be)->name, sel.why);
    for (int op = 1; op < KILN_OP_COUNT; op++) {
        const char *p = kiln_backend_op_provider(be, (kiln_op)op);
        const char *f = kiln_backend_op_fallback(be, (kiln_op)op);
        /* "conv2d=clblast|opencl": CLBlast where it can express the shape, else opencl */
        printf(" %s=%s%s%s", kiln_op_name((kiln_op)op), p ? p : "unsupported", f ? "|" : "",
               f ? f : "");
    }
    printf("\n");
    char limits[1024];
    if (kiln_backend_limits(be, limits, sizeof limits) != KILN_OK) {
        fprintf(stderr, "kiln devices: %s\n", kiln_last_error());
        kiln_backend_free(be);
        return 1;
    }
    /* One "limits:" line, continuation lines indented under it. */
    printf("  limits used:");
    for (const char *p = limits; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        printf("%s%.*s\n", p == limits ? " " : "    ", len, p);
        p += len + (nl != NULL);
    }
    kiln_backend_free(be);
    return 0;
}
