/* The CLI side of data parallelism: joining the job mpirun started, each rank's device and data
   workers, and ending every rank when one fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln-tool.h"
#include "kiln/backend.h"
#include "kiln/kiln.h"

/* KILN_DEVICE for this rank: an entry of a comma-separated list (local rank i takes entry i
   modulo the list's length), one device for every rank when it names one, or -- unset -- the
   local rank's device among those the default selection takes (GPUs first). */
static int pick_device(kiln_dist_t d, const char *cmd) {
    const char *env = getenv("KILN_DEVICE");
    int lr = kiln_dist_local_rank(d);
    char spec[256];
    if (env && strchr(env, ',')) {
        int count = 1;
        for (const char *p = env; *p; p++) count += *p == ',';
        int want = lr % count;
        const char *p = env;
        for (int k = 0; k < want; k++) p = strchr(p, ',') + 1;
        size_t len = strcspn(p, ",");
        if (!len || len >= sizeof spec) {
            fprintf(stderr, "kiln %s: rank %d: KILN_DEVICE=%s: entry %d is empty or too long\n",
                    cmd, kiln_dist_rank(d), env, want);
            return 1;
        }
        memcpy(spec, p, len);
        spec[len] = '\0';
    } else if (env && *env) {
        return 0;
    } else {
        kiln_device_info *devs = NULL;
        int n = 0;
        if (kiln_devices_list(&devs, &n)) {
            fprintf(stderr, "kiln %s: rank %d: %s\n", cmd, kiln_dist_rank(d), kiln_last_error());
            return 1;
        }
        int i = kiln_devices_default_nth(devs, n, lr);
        if (i >= 0) snprintf(spec, sizeof spec, "%d", devs[i].index);
        free(devs);
        if (i < 0) return 0; /* no OpenCL device: the backend's own rule applies */
    }
    if (setenv("KILN_DEVICE", spec, 1)) {
        perror("setenv KILN_DEVICE");
        return 1;
    }
    return 0;
}

int kiln_cli_dist_start(const char *cmd, kiln_dist_t *out) {
    if (kiln_dist_init(NULL, NULL, out)) {
        fprintf(stderr, "kiln %s: %s\n", cmd, kiln_last_error());
        return 1;
    }
    if (kiln_dist_size(*out) > 1 && pick_device(*out, cmd)) {
        kiln_dist_abort(*out, 1, "no device for this rank");
        return 1;
    }
    return 0;
}

int kiln_cli_dist_workers(kiln_dist_t d, int workers) {
    if (workers > 0 || kiln_dist_local_size(d) < 2) return workers;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long share = cores / kiln_dist_local_size(d);
    return share > 1 ? (int)share : 1;
}

int kiln_cli_dist_fail(kiln_dist_t d, const char *cmd) {
    char msg[4200];
    snprintf(msg, sizeof msg, "kiln %s: %s", cmd, kiln_last_error());
    if (kiln_dist_size(d) > 1) {
        /* Every rank ends: the others may be waiting for this one in a collective. */
        kiln_dist_abort(d, 1, msg);
    }
    fprintf(stderr, "%s\n", msg);
    return 1;
}
