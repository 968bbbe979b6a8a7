/* The on-disk cache directory and atomic file writes. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend-impl.h"

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
    return access(tmp, W_OK);
}

void kiln_cache_dir(const char *sub, char *out, size_t n, int *enabled) {
    static int warned;
    const char *env = getenv("KILN_CACHE_DIR");
    *enabled = 0;
    out[0] = '\0';
    if (env && !strcasecmp(env, "off")) return;
    char base[4096];
    if (env && *env) {
        snprintf(base, sizeof base, "%s", env);
    } else if (getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME")) {
        snprintf(base, sizeof base, "%s/kiln", getenv("XDG_CACHE_HOME"));
    } else if (getenv("HOME") && *getenv("HOME")) {
        snprintf(base, sizeof base, "%s/.cache/kiln", getenv("HOME"));
    } else {
        if (!warned++) kiln_log(KILN_LOG_WARN, "no HOME or KILN_CACHE_DIR: running uncached");
        return;
    }
    snprintf(out, n, "%s/%s", base, sub);
    if (mkdirs(out)) {
        if (!warned++)
            kiln_log(KILN_LOG_WARN, "cache directory %s is not writable (%s): running uncached",
                     out, strerror(errno));
        out[0] = '\0';
        return;
    }
    *enabled = 1;
}

struct kiln_atomic_file {
    int fd;
    char path[4096];
    char tmp[4200];
};

kiln_status kiln_atomic_open(const char *path, kiln_atomic_file **out) {
    *out = NULL;
    kiln_atomic_file *af = calloc(1, sizeof *af);
    if (!af) return kiln_error(KILN_OUT_OF_MEMORY, "%s: out of host memory", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (af->fd < 0) {
        kiln_status st = kiln_error(KILN_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
        free(af);
        return st;
    }
    *out = af;
    return KILN_OK;
}

kiln_status kiln_atomic_write(kiln_atomic_file *af, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return kiln_error(KILN_IO, "%s: write failed: %s", af->tmp, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return KILN_OK;
}

void kiln_atomic_abort(kiln_atomic_file *af) {
    if (!af) return;
    close(af->fd);
    unlink(af->tmp);
    free(af);
}

kiln_status kiln_atomic_commit(kiln_atomic_file *af) {
    kiln_status st = KILN_OK;
    if (fsync(af->fd)) st = kiln_error(KILN_IO, "%s: fsync failed: %s", af->tmp, strerror(errno));
    if (close(af->fd) && !st)
        st = kiln_error(KILN_IO, "%s: close failed: %s", af->tmp, strerror(errno));
    af->fd = -1;
    if (!st && rename(af->tmp, af->path))
        st = kiln_error(KILN_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st) {
        unlink(af->tmp);
        free(af);
        return st;
    }
    /* The rename is durable only once the directory entry is. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", af->path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(af);
    return KILN_OK;
}

kiln_status kiln_write_file_atomic(const char *path, const void *data, size_t n) {
    kiln_atomic_file *af;
    kiln_status st = kiln_atomic_open(path, &af);
    if (st) return st;
    if ((st = kiln_atomic_write(af, data, n))) {
        kiln_atomic_abort(af);
        return st;
    }
    return kiln_atomic_commit(af);
}
