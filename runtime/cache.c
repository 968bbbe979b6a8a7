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

kiln_status kiln_write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return kiln_error(KILN_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return kiln_error(KILN_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        int e = errno;
        unlink(tmp);
        return kiln_error(KILN_IO, "%s: fsync failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return kiln_error(KILN_IO, "%s: rename failed: %s", path, strerror(e));
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KILN_OK;
}
