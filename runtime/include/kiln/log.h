/* Logging controlled by KILN_LOG = error | warn (default) | info | debug. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KILN_LOG_ERROR, KILN_LOG_WARN, KILN_LOG_INFO, KILN_LOG_DEBUG } kiln_log_level;

/* Reads KILN_LOG; an unknown value is KILN_INVALID_ARGUMENT with the valid choices. */
kiln_status kiln_log_init_from_env(void);
void kiln_log_set_level(kiln_log_level level);
kiln_log_level kiln_log_get_level(void);
void kiln_log(kiln_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
