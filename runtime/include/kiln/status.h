/* kiln status codes and the thread-local error message. */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* One list generates the enum, the names and the messages (libuv style). */
#define KILN_STATUS_LIST(X)                                                                        \
    X(OK, "success")                                                                               \
    X(INVALID_ARGUMENT, "invalid argument")                                                        \
    X(OUT_OF_MEMORY, "out of memory")                                                              \
    X(UNSUPPORTED, "operation not supported")                                                      \
    X(NOT_FOUND, "not found")                                                                      \
    X(NO_DEVICE, "no matching device")                                                             \
    X(IO, "input/output error")                                                                    \
    X(CORRUPT, "corrupt or malformed data")                                                        \
    X(OPENCL, "OpenCL error")                                                                      \
    X(BUILD, "kernel build failed")                                                                \
    X(SHAPE, "shape or dtype mismatch")                                                            \
    X(INTERNAL, "internal error")

typedef enum {
#define KILN_STATUS_ENUM(name, msg) KILN_##name,
    KILN_STATUS_LIST(KILN_STATUS_ENUM)
#undef KILN_STATUS_ENUM
        KILN_STATUS_COUNT
} kiln_status;

/* "KILN_OUT_OF_MEMORY" */
const char *kiln_status_name(kiln_status s);
/* "out of memory" */
const char *kiln_status_str(kiln_status s);
/* Detail of the last failure on this thread (OpenCL error name, file and line, build log,
   the argument that was wrong). Never NULL; empty when nothing failed. */
const char *kiln_last_error(void);
void kiln_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
