#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend-impl.h"

/* stb_image style: the failure reason is per thread, so decoding on many threads stays
   simple. Large enough for a kernel build log excerpt. */
static _Thread_local char last_error[8192];

const char *kiln_status_name(kiln_status s) {
    switch (s) {
#define KILN_STATUS_NAME(name, msg)                                                                \
    case KILN_##name:                                                                              \
        return "KILN_" #name;
        KILN_STATUS_LIST(KILN_STATUS_NAME)
#undef KILN_STATUS_NAME
    default:
        return "KILN_UNKNOWN_STATUS";
    }
}

const char *kiln_status_str(kiln_status s) {
    switch (s) {
#define KILN_STATUS_MSG(name, msg)                                                                 \
    case KILN_##name:                                                                              \
        return msg;
        KILN_STATUS_LIST(KILN_STATUS_MSG)
#undef KILN_STATUS_MSG
    default:
        return "unknown status";
    }
}

const char *kiln_last_error(void) {
    return last_error;
}

void kiln_clear_error(void) {
    last_error[0] = '\0';
}

kiln_status kiln_error(kiln_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void kiln_error_append(const char *fmt, ...) {
    size_t len = strlen(last_error);
    if (len + 1 >= sizeof last_error) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error + len, sizeof last_error - len, fmt, ap);
    va_end(ap);
}

uint64_t kiln_hash64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

double kiln_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
