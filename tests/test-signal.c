/* SIGINT during `kiln train` (the built CLI, run as a child process on the cpu backend): the
   process exits with 130 (128 + SIGINT), last.safetensors holds the exact position and loads,
   it equals the checkpoint of an uninterrupted run stopped at the same step, and `--resume`
   from it continues exactly: after a few more steps parameters, optimizer state and position
   are byte-identical to an uninterrupted run's; another model's resume is refused with the
   reason. The data comes from `kiln data gen`. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "kiln/checkpoint.h"
#include "kiln/kiln.h"

/* 96 images in batches of 16: steps long enough next to the end-of-epoch checkpoint that a
   signal timed for mid-epoch lands there. */
enum { STEPS = 6 };

static char kiln_bin[4096];
static char dir[] = "/tmp/kiln-test-signal-XXXXXX";

static const char *MODEL = "image = input(shape=24x24x3, dtype=u8)\n"
                           "flip = random_flip(image, mode=horizontal)\n"
                           "scaled = rescale(flip, scale=1/255)\n"
                           "c1 = conv2d(scaled, filters={width}, kernel=3, padding=same)\n"
                           "r1 = relu(c1)\n"
                           "p1 = maxpool(r1, pool=2)\n"
                           "f = flatten(p1)\n"
                           "d = dropout(f, rate=0.2)\n"
                           "logits = dense(d, units={classes})\n"
                           "output(logits)\n";

/* The CLI sits at the top of the build tree: BUILD/kiln beside BUILD/tests/test-signal. */
static int find_kiln(void) {
    char self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(self, '/');
        if (!slash) return -1;
        *slash = 0;
    }
    snprintf(kiln_bin, sizeof kiln_bin, "%s/kiln", self);
    return access(kiln_bin, X_OK);
}

static const char *path(const char *name) {
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(void) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Starts kiln with args (NULL-terminated) and stdout + stderr to log. */
static pid_t spawn(const char *const *args, const char *log) {
    const char *argv[32];
    int n = 0;
    argv[n++] = kiln_bin;
    for (; args[n - 1] && n < 31; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        execv(kiln_bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* The exit code, 128 + N for a death by signal N, -1 when it ran past timeout_s (it is
   killed). */
static int finish(pid_t pid, double timeout_s) {
    double t0 = now();
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return -1;
        if (now() - t0 > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nap();
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run(const char *const *args, const char *log) {
    pid_t pid = spawn(args, log);
    return pid < 0 ? -1 : finish(pid, 60);
}

/* Whether a line of the text file p holds needle. */
static int has_line(const char *p, const char *needle) {
    FILE *f = fopen(p, "r");
    char line[4096];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    if (f) fclose(f);
    return found;
}

static int same_file(const char *a, const char *b) {
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x && y;
    for (int c = 0; same && c != EOF;) same = (c = getc(x)) == getc(y);
    if (x) fclose(x);
    if (y) fclose(y);
    return same;
}

/* Lines in A's log.csv (a header, then one per epoch) and the last one's final field: the
   seconds that epoch's steps took. */
static int log_lines(double *last_seconds) {
    FILE *f = fopen(path("a/log.csv"), "r");
    char line[1024];
    int lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *comma = strrchr(line, ',');
        if (comma && last_seconds) *last_seconds = atof(comma + 1);
        lines++;
    }
    if (f) fclose(f);
    return lines;
}

/* `kiln train` of MODEL with the runs' common settings into OUT, optionally up to max_steps and
   resuming a checkpoint; in the background when bg is given. */
static int train(const char *model, const char *out, const char *max_steps, const char *resume,
                 pid_t *bg) {
    const char *args[32] = {"train",    "--model",     path(model), "--data", path("data"),
                            "--epochs", "100000",      "--batch",   "16",     "--workers",
                            "2",        "--optimizer", "adam",      "--lr",   "0.01",
                            "--seed",   "5",           "--out",     path(out)};
    int n = 19;
    if (max_steps) args[n++] = "--max-steps", args[n++] = max_steps;
    if (resume) args[n++] = "--resume", args[n++] = resume;
    args[n] = NULL;
    char log[700];
    snprintf(log, sizeof log, "%s/%s.log", dir, out);
    if (bg) return (*bg = spawn(args, log)) < 0 ? -1 : 0;
    return run(args, log);
}

static void test_sigint(void) {
    /* A: runs until interrupted, most likely in the middle of its third epoch: log.csv gains a
       line at the end of each, holding the time its steps took; the signal comes half that
       time after the second epoch's line. Any position is a valid test; mid-epoch also covers
       the loader's seek on resume. */
    pid_t pid;
    int rc = train("tiny.kiln", "a", NULL, NULL, &pid);
    CHECK(rc == 0, "kiln train starts");
    if (rc) return;
    double t0 = now(), steps_s = 0;
    while (log_lines(&steps_s) < 3 && now() - t0 < 30) nap();
    CHECK(log_lines(NULL) >= 3, "the first two epochs end (see %s)", path("a.log"));
    double until = now() + steps_s / 2;
    while (now() < until) nap();
    kill(pid, SIGINT);
    rc = finish(pid, 30);
    CHECK(rc == 130, "SIGINT: exit code %d, want 130 (128 + SIGINT); output in %s", rc,
          path("a.log"));
    CHECK(has_line(path("a.log"), "interrupted:") && has_line(path("a.log"), "--resume it"),
          "the output says where the position was saved");

    /* The checkpoint loads (kiln_checkpoint_metadata validates the whole file). */
    char last[600];
    snprintf(last, sizeof last, "%s", path("a/last.safetensors"));
    char *gs = NULL;
    kiln_status st = kiln_checkpoint_metadata(last, "global_step", &gs);
    long k = gs ? strtol(gs, NULL, 10) : 0;
    CHECK(!st && k >= STEPS, "the interrupted run's checkpoint loads, global step %ld", k);
    free(gs);
    if (st || k < STEPS) return;
    printf("interrupted at global step %ld (epoch %ld, step %ld)\n", k, k / STEPS + 1, k % STEPS);

    /* The interrupt changed nothing: an uninterrupted run stopped at step k writes the same
       bytes. */
    char ks[32], k3[32];
    snprintf(ks, sizeof ks, "%ld", k);
    snprintf(k3, sizeof k3, "%ld", k + 3);
    CHECK(train("tiny.kiln", "b", ks, NULL, NULL) == 0, "uninterrupted run to step %ld", k);
    CHECK(same_file(last, path("b/last.safetensors")),
          "the interrupted checkpoint equals an uninterrupted run's at step %ld", k);

    /* --resume continues exactly: 3 more steps from the checkpoint equal a straight run. */
    CHECK(train("tiny.kiln", "c", k3, last, NULL) == 0, "resumed run to step %ld", k + 3);
    CHECK(train("tiny.kiln", "d", k3, NULL, NULL) == 0, "uninterrupted run to step %ld", k + 3);
    CHECK(same_file(path("c/last.safetensors"), path("d/last.safetensors")),
          "after --resume, parameters, optimizer state and position equal an uninterrupted "
          "run's at step %ld",
          k + 3);

    /* Another model refuses the checkpoint with the reason, and training does not start. */
    rc = train("other.kiln", "e", NULL, last, NULL);
    CHECK(rc == 1 && has_line(path("e.log"), "the model expects") &&
              !has_line(path("e.log"), "Epoch"),
          "--resume with another model: exit %d, output in %s", rc, path("e.log"));
}

int main(void) {
    if (find_kiln()) {
        printf("the kiln CLI is not at %s (build the kiln_cli target)\n0 passed, 1 failed\n",
               kiln_bin);
        return 1;
    }
    if (!mkdtemp(dir)) {
        printf("cannot create %s\n0 passed, 1 failed\n", dir);
        return 1;
    }
    /* The cpu backend: bit-identical runs, and no OpenCL device needed. */
    setenv("KILN_BACKEND", "cpu", 1);
    /* tiny.kiln trains; other.kiln is the same graph with narrower convolutions. */
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "other.kiln" : "tiny.kiln";
        FILE *f = fopen(path(name), "w");
        int ok = f && fprintf(f, "var width = %d\n%s", k ? 8 : 16, MODEL) > 0;
        if (f) ok &= fclose(f) == 0;
        CHECK(ok, "write %s", path(name));
    }
    const char *gen[] = {"data",      "gen", "--out",      path("data"), "--count", "96",
                         "--classes", "3",   "--gen-size", "24x24",      NULL};
    CHECK(run(gen, path("gen.log")) == 0, "kiln data gen (see %s)", path("gen.log"));
    if (check_failed == 0) test_sigint();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!check_failed && system(cmd)) printf("could not remove %s\n", dir);
    if (check_failed) printf("kept %s for inspection\n", dir);
    return check_done();
}
