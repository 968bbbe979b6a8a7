/* `kiln bench --compare`, the regression gate, run as a command on generated results files:
   within the threshold it passes, one case slower than the threshold fails, a larger
   threshold lets it pass again, a case that stops agreeing with the cpu backend fails, rows
   in one file only are not compared, and usage errors exit 2. Then a real results file from a
   tiny suite run (u8_to_f32 only) has every field the gate and the report rely on, and
   compares equal to itself. The kiln binary is the one built next to this test (build/kiln,
   this program being build/tests/test-bench-compare). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench-util.h"
#include "check.h"

static char kiln[4096], dir[] = "/tmp/kiln-test-compare-XXXXXX";

static int find_kiln(void) {
    ssize_t n = readlink("/proc/self/exe", kiln, sizeof kiln - 16);
    if (n <= 0) return 0;
    kiln[n] = '\0';
    char *slash = strrchr(kiln, '/');
    if (!slash) return 0;
    *slash = '\0';
    slash = strrchr(kiln, '/');
    if (!slash) return 0;
    strcpy(slash, "/kiln");
    return access(kiln, X_OK) == 0;
}

/* A suite results file with two cases; ms of each, and whether the second passes its check. */
static void write_results(const char *name, double ms_gemm, double ms_conv, int conv_pass,
                          int extra) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f,
            "{\"kiln_version\": \"0.1.0\", \"git_commit\": \"test\", \"results\": [\n"
            " {\"device\": \"dev\", \"backend\": \"opencl\", \"op\": \"gemm\", \"shape\": "
            "\"256x256x256\", \"pass\": true, \"ms\": %g},\n"
            " {\"device\": \"dev\", \"backend\": \"opencl\", \"op\": \"conv2d\", \"shape\": "
            "\"vgg16n@32 b1c1\", \"pass\": %s, \"ms\": %g}%s\n]}\n",
            ms_gemm, conv_pass ? "true" : "false", ms_conv,
            extra ? ",\n {\"device\": \"dev\", \"backend\": \"auto\", \"op\": \"gemm\", "
                    "\"shape\": \"512x512x512\", \"ms\": 1}"
                  : "");
    fclose(f);
}

/* Runs kiln bench --compare dir/OLD dir/NEW [extra args]; returns the exit code and keeps the
   output. */
static int compare(const char *old, const char *new_, const char *threshold, char *out, size_t n) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", dir, old);
    snprintf(b, sizeof b, "%s/%s", dir, new_);
    char *argv[8] = {kiln, "bench", "--compare", a, b, NULL};
    if (threshold) {
        argv[5] = "--threshold";
        argv[6] = (char *)threshold;
        argv[7] = NULL;
    }
    int pid;
    FILE *f = kiln_spawn_read(argv, &pid);
    if (!f) return -1;
    size_t len = fread(out, 1, n - 1, f);
    out[len] = '\0';
    return kiln_spawn_wait(f, pid);
}

static int run(char *const argv[]) {
    int pid;
    FILE *p = kiln_spawn_read(argv, &pid);
    return p ? kiln_spawn_wait(p, pid) : -1;
}

static void suite_results(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/suite.json", dir);
    char *argv[] = {kiln,       "bench", "--quick", "--only", "convert", "--no-peers",
                    "--min-ms", "1",     "--json",  path,     NULL};
    int rc = run(argv);
    CHECK(rc == 0, "kiln bench --quick --only convert: exit %d", rc);
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    size_t n = f && text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    cJSON *root = n ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(root != NULL, "%s is JSON", path);
    if (!root) return;
    static const char *const top[] = {"kiln_version", "git_commit", "devices", "results"};
    for (int i = 0; i < 4; i++)
        CHECK(cJSON_GetObjectItem(root, top[i]) != NULL, "results file has '%s'", top[i]);
    cJSON *res = cJSON_GetObjectItem(root, "results"), *row;
    int rows = 0, checked = 0;
    cJSON_ArrayForEach(row, res) {
        static const char *const keys[] = {
            "device", "driver", "backend", "op",     "shape",           "pass",
            "ms",     "spread", "runs",    "gflops", "fraction_of_peak"};
        for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++)
            CHECK(cJSON_GetObjectItem(row, keys[i]) != NULL, "row %d has '%s'", rows, keys[i]);
        cJSON *ms = cJSON_GetObjectItem(row, "ms"), *runs = cJSON_GetObjectItem(row, "runs");
        CHECK(cJSON_IsNumber(ms) && ms->valuedouble > 0, "row %d: ms > 0", rows);
        CHECK(cJSON_IsNumber(runs) && runs->valuedouble >= 3, "row %d: at least 3 runs", rows);
        checked += cJSON_IsTrue(cJSON_GetObjectItem(row, "pass"));
        rows++;
    }
    cJSON_Delete(root);
    /* cpu (the reference) plus at least one OpenCL backend when a device exists */
    CHECK(rows >= 2, "u8_to_f32 rows: %d", rows);
    CHECK(rows < 4 || checked > 0, "OpenCL rows checked against the cpu backend: %d", checked);
    char out[8192];
    rc = compare("suite.json", "suite.json", NULL, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "0 slower"), "a results file against itself: exit %d:\n%s", rc,
          out);
}

int main(void) {
    if (!find_kiln() || !mkdtemp(dir)) {
        printf("FAIL: the kiln binary is not next to the tests directory (%s)\n", kiln);
        return 1;
    }
    char out[8192];
    write_results("old.json", 10.0, 20.0, 1, 0);
    write_results("same.json", 10.5, 19.0, 1, 1); /* within 10%, plus a new case */
    write_results("slow.json", 10.0, 23.0, 1, 0); /* conv 15% slower */
    write_results("broken.json", 10.0, 20.0, 0, 0);

    int rc = compare("old.json", "same.json", NULL, out, sizeof out);
    CHECK(rc == 0, "within the threshold: exit %d, output:\n%s", rc, out);
    CHECK(strstr(out, "1.050") && strstr(out, "0.950"), "ratios printed:\n%s", out);
    CHECK(strstr(out, "2 cases compared") && strstr(out, "1 only in"),
          "counts and the case only in the new file:\n%s", out);

    rc = compare("old.json", "slow.json", NULL, out, sizeof out);
    CHECK(rc == 1, "15%% slower, default threshold 10%%: exit %d, output:\n%s", rc, out);
    CHECK(strstr(out, "1.150") && strstr(out, "SLOWER"), "the slower case is named:\n%s", out);

    rc = compare("old.json", "slow.json", "0.2", out, sizeof out);
    CHECK(rc == 0, "15%% slower, threshold 0.2: exit %d, output:\n%s", rc, out);

    rc = compare("old.json", "broken.json", NULL, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "NOW FAILS"), "a check that now fails: exit %d:\n%s", rc, out);

    rc = compare("old.json", "missing.json", NULL, out, sizeof out);
    CHECK(rc == 2, "a missing file is a usage error: exit %d", rc);

    char a[256];
    snprintf(a, sizeof a, "%s/old.json", dir);
    char *argv[] = {kiln, "bench", "--compare", a, NULL};
    rc = run(argv);
    CHECK(rc == 2, "one file only is a usage error: exit %d", rc);

    suite_results();
    kiln_remove_tree(dir);
    return check_done();
}
