/* Checkpoints: a round trip (also read back by an independent safetensors reader written with
   Python's standard library), every kind of corruption rejected before any tensor is
   touched, and kill -9 at random moments while writing never leaves an unloadable file. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln/checkpoint.h"
#include "check.h"
#include "kiln/kiln.h"

static char dir[] = "/tmp/kiln-test-ckpt-XXXXXX";
static kiln_backend_t be;

static void path_of(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

/* A raw file: 8-byte length, header text, then `data` bytes. */
static void write_raw(const char *name, const char *header, size_t data_bytes, long hlen_override) {
    char p[256];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    uint64_t h = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(header);
    for (int i = 0; i < 8; i++) fputc((int)(h >> (8 * i)) & 0xff, f);
    fputs(header, f);
    for (size_t i = 0; i < data_bytes; i++) fputc((int)i & 0xff, f);
    fclose(f);
}

static void test_roundtrip(void) {
    kiln_tensor a, b, c;
    int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[3] = {1, 1, 5};
    kiln_tensor_alloc(&a, be, KILN_F32, 2, sa);
    kiln_tensor_alloc(&b, be, KILN_I32, 1, sb);
    kiln_tensor_alloc(&c, be, KILN_F32, 3, sc);
    float av[6] = {1, 2, 3, 4, 5, 6.5f}, cv[5] = {-1, 0, 1e-8f, 3e8f, 7};
    int32_t bv[4] = {7, -8, 9, 2147483647};
    kiln_tensor_set(&a, av, sizeof av);
    kiln_tensor_set(&b, bv, sizeof bv);
    kiln_tensor_set(&c, cv, sizeof cv);
    kiln_ckpt_tensor ts[3] = {{"conv1.weight", &a}, {"step counts", &b}, {"fc/\"bias\"", &c}};
    const char *meta[] = {"epoch", "3", "model", "vgg16-narrow", NULL};
    char p[256];
    path_of(p, sizeof p, "good.safetensors");
    kiln_status st = kiln_checkpoint_save(p, ts, 3, meta);
    CHECK(st == KILN_OK, "save");
    float a2[6] = {0}, c2[5] = {0};
    int32_t b2[4] = {0};
    kiln_tensor_set(&a, a2, sizeof a2);
    kiln_tensor_set(&b, b2, sizeof b2);
    kiln_tensor_set(&c, c2, sizeof c2);
    st = kiln_checkpoint_load(p, ts, 3);
    kiln_tensor_get(&a, a2, sizeof a2);
    kiln_tensor_get(&b, b2, sizeof b2);
    kiln_tensor_get(&c, c2, sizeof c2);
    CHECK(st == KILN_OK && !memcmp(a2, av, sizeof av) && !memcmp(b2, bv, sizeof bv) &&
              !memcmp(c2, cv, sizeof cv),
          "load returns what was saved");
    char *v = NULL;
    st = kiln_checkpoint_metadata(p, "model", &v);
    CHECK(st == KILN_OK && v && !strcmp(v, "vgg16-narrow"), "metadata");
    free(v);
    /* An independent reader of the safetensors layout (Python's json and struct only). */
    char cmd[1024];
    snprintf(
        cmd, sizeof cmd,
        "python3 -c 'import json,struct,sys; d=open(sys.argv[1],\"rb\").read(); "
        "n=struct.unpack(\"<Q\",d[:8])[0]; h=json.loads(d[8:8+n]); b=d[8+n:]; "
        "e=h[\"conv1.weight\"]; s,t=e[\"data_offsets\"]; "
        "v=struct.unpack(\"<6f\",b[s:t]); assert e[\"dtype\"]==\"F32\" and e[\"shape\"]==[2,3]; "
        "assert v==(1,2,3,4,5,6.5), v; assert (8+n)%%8==0; "
        "assert h[\"__metadata__\"][\"epoch\"]==\"3\"' %s",
        p);
    if (system("python3 -c 'import json' 2>/dev/null") == 0)
        CHECK(system(cmd) == 0, "an independent safetensors reader agrees");
    kiln_tensor_release(&a);
    kiln_tensor_release(&b);
    kiln_tensor_release(&c);
}

/* Each broken file is refused with `expect` in the message, and the destination tensor keeps
   its sentinel values. */
static void expect_reject(const char *name, kiln_status want, const char *expect, int64_t n) {
    kiln_tensor t;
    int64_t s[1] = {n};
    kiln_tensor_alloc(&t, be, KILN_F32, 1, s);
    float sentinel[8] = {42, 42, 42, 42, 42, 42, 42, 42}, back[8];
    kiln_tensor_set(&t, sentinel, sizeof(float) * (size_t)n);
    kiln_tensor t2 = t;
    kiln_ckpt_tensor ts[2] = {{"w", &t}, {"v", &t2}};
    char p[256];
    path_of(p, sizeof p, name);
    kiln_status st = kiln_checkpoint_load(p, ts, 2);
    kiln_tensor_get(&t, back, sizeof(float) * (size_t)n);
    CHECK(st == want && strstr(kiln_last_error(), expect) &&
              !memcmp(back, sentinel, sizeof(float) * (size_t)n),
          "%s: rejected as %s with '%s' (got %s)", name, kiln_status_name(want), expect,
          kiln_status_name(st));
    kiln_tensor_release(&t);
}

static void test_corruption(void) {
    const char *w = "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    const char *v = "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}";
    char h[512];
    snprintf(h, sizeof h, "{%s,%s}", w, v);
    write_raw("ok.st", h, 16, -1);
    expect_reject("missing.st", KILN_IO, "cannot open", 2);
    write_raw("empty.st", "", 0, 0);
    expect_reject("empty.st", KILN_CORRUPT, "not a JSON object", 2);
    write_raw("short.st", h, 15, -1);
    expect_reject("short.st", KILN_CORRUPT, "beyond the data", 2);
    write_raw("hlen.st", h, 16, 1L << 40);
    expect_reject("hlen.st", KILN_CORRUPT, "header length", 2);
    write_raw("json.st", "{\"w\":{\"dtype\":", 16, -1);
    expect_reject("json.st", KILN_CORRUPT, "not a JSON object", 2);
    snprintf(h, sizeof h, "{%s,\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             w);
    write_raw("overlap.st", h, 16, -1);
    expect_reject("overlap.st", KILN_CORRUPT, "overlaps", 2);
    snprintf(h, sizeof h, "{%s,\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
             w);
    write_raw("hole.st", h, 20, -1);
    expect_reject("hole.st", KILN_CORRUPT, "hole", 2);
    snprintf(h, sizeof h, "{%s,\"v\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,16]}}",
             w);
    write_raw("size.st", h, 16, -1);
    expect_reject("size.st", KILN_CORRUPT, "shape needs", 2);
    snprintf(h, sizeof h, "{%s,\"v\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]}}",
             w);
    write_raw("dtype.st", h, 16, -1);
    expect_reject("dtype.st", KILN_CORRUPT, "unsupported dtype 'F64'", 2);
    snprintf(h, sizeof h, "{%s,%s,%s}", w, v, w);
    write_raw("dup.st", h, 16, -1);
    expect_reject("dup.st", KILN_CORRUPT, "appears twice", 2);
    /* A duplicate among many entries: found by sorting the names, where comparing every pair
       took time quadratic in the entries (hours for a hostile 100 MB header). */
    enum { MANY = 20000 };
    char *big = malloc((size_t)MANY * 80 + 16);
    size_t len = 0;
    for (int i = 0; big && i <= MANY; i++)
        len += (size_t)sprintf(
            big + len, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
            i ? "," : "{", i % MANY, i, i + 1);
    if (big) strcpy(big + len, "}");
    write_raw("many.st", big ? big : "", MANY + 1, -1);
    expect_reject("many.st", KILN_CORRUPT, "tensor 't0' appears twice", 2);
    free(big);
    snprintf(h, sizeof h, "{%s,\"v\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[8,16]}}",
             w);
    write_raw("neg.st", h, 16, -1);
    expect_reject("neg.st", KILN_CORRUPT, "bad dimension", 2);
    /* Valid files that do not fit the model: a shape mismatch, a missing tensor. */
    expect_reject("ok.st", KILN_SHAPE, "tensor 'w' is f32[2], the model expects f32[3]", 3);
    snprintf(h, sizeof h, "{%s}", w);
    write_raw("one.st", h, 8, -1);
    expect_reject("one.st", KILN_NOT_FOUND, "no tensor 'v'", 2);
}

/* A child rewrites a checkpoint in a loop; the parent kills it at random moments and checks
   that what is on disk always loads and holds one complete version. */
static void test_kill_during_write(void) {
    enum { N = 1 << 20, TRIALS = 25 };
    char p[256];
    path_of(p, sizeof p, "kill.safetensors");
    kiln_tensor t;
    int64_t s[1] = {N};
    kiln_tensor_alloc(&t, be, KILN_F32, 1, s);
    float *h = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) h[i] = 1.0f;
    kiln_tensor_set(&t, h, sizeof(float) * N);
    kiln_ckpt_tensor ts[1] = {{"w", &t}};
    kiln_checkpoint_save(p, ts, 1, NULL);
    int loadable = 0;
    srand(7);
    for (int trial = 0; trial < TRIALS; trial++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int version = 2;; version++) {
                for (int i = 0; i < N; i++) h[i] = (float)version;
                kiln_tensor_set(&t, h, sizeof(float) * N);
                kiln_checkpoint_save(p, ts, 1, NULL);
            }
        }
        usleep((useconds_t)(rand() % 40000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        kiln_status st = kiln_checkpoint_load(p, ts, 1);
        kiln_tensor_get(&t, h, sizeof(float) * N);
        int uniform = 1;
        for (int i = 1; i < N && uniform; i++) uniform = h[i] == h[0];
        loadable += st == KILN_OK && uniform;
    }
    printf(
        "kill -9 during checkpoint writes: %d of %d trials left a loadable, complete checkpoint\n",
        loadable, TRIALS);
    CHECK(loadable == TRIALS, "every kill left a loadable checkpoint (%d of %d)", loadable, TRIALS);
    free(h);
    kiln_tensor_release(&t);
}

int main(void) {
    if (!mkdtemp(dir) || kiln_backend_init("cpu", NULL, &be)) {
        printf("setup failed: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    test_roundtrip();
    test_corruption();
    test_kill_during_write();
    kiln_backend_free(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
    return check_done();
}
