#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend-impl.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static kiln_log_level current = KILN_LOG_WARN;

kiln_status kiln_log_init_from_env(void) {
    const char *v = getenv("KILN_LOG");
    if (!v || !*v) return KILN_OK;
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(v, level_names[i])) {
            current = (kiln_log_level)i;
            return KILN_OK;
        }
    return kiln_error(KILN_INVALID_ARGUMENT,
                      "KILN_LOG='%s' is not a log level; valid: error, warn, info, debug", v);
}

void kiln_log_set_level(kiln_log_level level) {
    current = level;
}

kiln_log_level kiln_log_get_level(void) {
    return current;
}

void kiln_log(kiln_log_level level, const char *fmt, ...) {
    if (level > current) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from several threads do not interleave. */
    fprintf(stderr, "kiln: %s: %s\n", level_names[level], line);
}
