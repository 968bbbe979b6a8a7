/* `kiln predict` end to end through the kiln binary: kiln train learns a generated class-folder
   JPEG dataset (24x24 RGB patterns, trained at 12x12 gray, so predict must resize and convert
   like the loader), prints where the report is, and predict then names the class of training
   images with probabilities in descending order; unreadable images are named on stderr, the
   others still predicted, and the exit code is 1; --help and unknown flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "data/data-impl.h"
#include "patterns.h"

enum { SRC = 12, SCALE = 2, PER_CLASS = 40 };

static const char *CLASSES[PATTERN_CLASSES] = {"bar-h", "bar-v", "blob", "diag line"};

static const char *MODEL = PATTERN_MODEL;

/* Class folders of 24x24 RGB JPEGs: each pattern pixel a 2x2 block, tinted per channel. */
static int write_jpegs(const char *root) {
    if (mkdir(root, 0755)) return -1;
    enum { W = SRC * SCALE };
    for (int cls = 0; cls < PATTERN_CLASSES; cls++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", root, CLASSES[cls]);
        if (mkdir(path, 0755)) return -1;
        for (int i = 0; i < PER_CLASS; i++) {
            unsigned char g[SRC * SRC], rgb[W * W * 3];
            pattern_draw(g, SRC, cls);
            for (int y = 0; y < W; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++)
                        rgb[(y * W + x) * 3 + c] =
                            (unsigned char)(g[(y / SCALE) * SRC + x / SCALE] * (4 - c) / 4);
            uint8_t *jpg = NULL;
            size_t n = 0;
            if (kiln_jpeg_encode(rgb, W, W, 3, 95, &jpg, &n)) return -1;
            snprintf(path, sizeof path, "%s/%s/%03d.jpg", root, CLASSES[cls], i);
            FILE *f = fopen(path, "wb");
            int bad = !f || fwrite(jpg, 1, n, f) != n;
            if (f) bad |= fclose(f) != 0;
            free(jpg);
            if (bad) return -1;
        }
    }
    return 0;
}

static char kiln[1024];

/* Runs `kiln ARGS` with the cpu backend: stdout into *out (malloc'ed), stderr into err_path;
   returns the exit code. */
static int run(const char *args, const char *err_path, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "KILN_BACKEND=cpu '%s' %s 2>'%s'", kiln, args, err_path);
    FILE *p = popen(cmd, "r");
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (size_t got; p && buf && (got = fread(buf + len, 1, cap - len - 1, p)) > 0;) {
        len += got;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[len] = '\0';
    *out = buf;
    int status = p ? pclose(p) : -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = calloc(1, 65536);
    if (b && fread(b, 1, 65535, f) == 0) b[0] = '\0';
    fclose(f);
    return b;
}

/* Checks the blocks "PATH\n  P  NAME\n..." of predict's output: top lines per image, the
   probabilities in (0, 1] and descending; returns how many top-1 names match the folder. */
static int check_output(char *out, const char *const *paths, int n, int top) {
    int right = 0, blocks = 0, well_formed = 1;
    char *line = strtok(out, "\n");
    for (int i = 0; i < n && line; i++, blocks++) {
        if (strcmp(line, paths[i])) {
            well_formed = 0;
            break;
        }
        double prev = 2, sum = 0;
        for (int k = 0; k < top; k++) {
            line = strtok(NULL, "\n");
            double p = 0;
            int at = 0;
            if (!line || sscanf(line, "  %lf  %n", &p, &at) != 1 || !at || !(p > 0) || p > prev) {
                well_formed = 0;
                break;
            }
            prev = p, sum += p;
            char want[256];
            const char *dir = strchr(paths[i], '/') ? paths[i] : "";
            snprintf(want, sizeof want, "/%s/", line + at);
            if (k == 0 && strstr(dir, want)) right++;
        }
        well_formed &= sum <= 1.0001;
        line = strtok(NULL, "\n");
    }
    CHECK(well_formed && blocks == n && !line,
          "predict prints each image's path, then %d classes with descending probabilities", top);
    return right;
}

int main(int argc, char **argv) {
    (void)argc;
    /* The kiln binary is built next to the tests directory. */
    char self[900];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(kiln, sizeof kiln, "%s/../kiln", sl > 0 ? self : ".");
    CHECK(access(kiln, X_OK) == 0, "the kiln binary is at %s (%s)", kiln, argv[0]);
    char dir[] = "/tmp/kiln-test-predict-XXXXXX";
    if (!mkdtemp(dir) || access(kiln, X_OK)) return check_done();
    char data[600], model[600], out[600], err[600], args[8192];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(model, sizeof model, "%s/model.kiln", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    FILE *mf = fopen(model, "w");
    int ok = mf && fputs(MODEL, mf) >= 0;
    if (mf) ok &= fclose(mf) == 0;
    CHECK(ok && write_jpegs(data) == 0, "the dataset and model are written");

    char *text = NULL;
    snprintf(args, sizeof args,
             "train --model '%s' --data '%s' --input 12x12x1 --epochs 8 --batch 16 --optimizer "
             "adam --lr 0.01 --workers 2 --seed 3 --out '%s'",
             model, data, out);
    int rc = run(args, err, &text);
    char report[700], line[800];
    snprintf(report, sizeof report, "%s/report.html", out);
    snprintf(line, sizeof line, "report: %s\n", report);
    CHECK(rc == 0 && text && strstr(text, line) && access(report, F_OK) == 0 &&
              strstr(text, "trained 8 epoch(s)"),
          "kiln train runs and says where the report is (exit %d):\n%s", rc, text ? text : "");
    free(text);

    /* Three training images per class. */
    enum { N = 3 * PATTERN_CLASSES };
    char paths[N][700], base[1500];
    const char *pp[N];
    snprintf(base, sizeof base, "predict --model '%s' --checkpoint '%s/last.safetensors' --top 2",
             model, out);
    size_t len = (size_t)snprintf(args, sizeof args, "%s", base);
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s/%03d.jpg", data, CLASSES[i % PATTERN_CLASSES],
                 i);
        pp[i] = paths[i];
        len += (size_t)snprintf(args + len, sizeof args - len, " '%s'", paths[i]);
    }
    rc = run(args, err, &text);
    CHECK(rc == 0, "kiln predict exits 0 (%d): %s", rc, text ? text : "");
    int right = text ? check_output(text, pp, N, 2) : 0;
    CHECK(right >= N * 3 / 4, "the trained classes come back by name: %d of %d right", right, N);
    free(text);

    /* A broken file and a missing one among good ones. */
    char broken[700], missing[700];
    snprintf(broken, sizeof broken, "%s/broken.jpg", dir);
    snprintf(missing, sizeof missing, "%s/missing.jpg", dir);
    FILE *bf = fopen(broken, "wb");
    if (bf) fputs("\xff\xd8\xff\xe0 this is not a JPEG", bf), fclose(bf);
    snprintf(args, sizeof args, "%s '%s' '%s' '%s' '%s'", base, paths[0], broken, missing,
             paths[1]);
    rc = run(args, err, &text);
    char *errs = slurp(err);
    pp[0] = paths[0], pp[1] = paths[1];
    CHECK(rc == 1, "unreadable images make the exit code 1 (%d)", rc);
    if (text) check_output(text, pp, 2, 2);
    char want_b[800], want_m[800];
    snprintf(want_b, sizeof want_b, "kiln predict: %s: ", broken);
    snprintf(want_m, sizeof want_m, "kiln predict: %s: ", missing);
    CHECK(errs && strstr(errs, want_b) && strstr(errs, want_m),
          "each unreadable image is named on stderr:\n%s", errs ? errs : "");
    free(errs);
    free(text);

    rc = run("predict --help", err, &text);
    CHECK(rc == 0 && text && strstr(text, "usage: kiln predict"), "--help exits 0 with the usage");
    free(text);
    snprintf(args, sizeof args, "%s --bogus '%s'", base, paths[0]);
    rc = run(args, err, &text);
    errs = slurp(err);
    CHECK(rc == 2 && errs && strstr(errs, "--bogus"), "an unknown flag exits 2 naming it (%d)", rc);
    free(errs);
    free(text);

    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    if (check_failed == 0 && system(args)) printf("could not remove %s\n", dir);
    return check_done();
}
