/* A generated image-classification task for the training tests: class 0 a horizontal bar,
   1 a vertical bar, 2 a 3x3 blob, 3 a diagonal, at a random position on a noisy background.
   Small nets learn it to high accuracy in a few epochs. */
#ifndef KILN_TEST_PATTERNS_H
#define KILN_TEST_PATTERNS_H

#include <stdint.h>

enum { PATTERN_CLASSES = 4 };

/* A small conv net with the pipeline nodes, batch norm and dropout, for 12x12 gray input. */
#define PATTERN_MODEL                                                                              \
    "image = input(shape=12x12x1, dtype=u8)\n"                                                     \
    "crop = random_crop(image, padding=1)\n"                                                       \
    "scaled = rescale(crop, scale=1/255)\n"                                                        \
    "c1 = conv2d(scaled, filters=8, kernel=3, padding=same)\n"                                     \
    "r1 = relu(c1)\n"                                                                              \
    "p1 = maxpool(r1, pool=2)\n"                                                                   \
    "c2 = conv2d(p1, filters=16, kernel=3, padding=same)\n"                                        \
    "b2 = batchnorm(c2)\n"                                                                         \
    "r2 = relu(b2)\n"                                                                              \
    "g = global_avg_pool(r2)\n"                                                                    \
    "d = dropout(g, rate=0.2)\n"                                                                   \
    "logits = dense(d, units={classes}, init=glorot)\n"                                            \
    "output(logits)\n"

static uint64_t pattern_rng = 0x12345678;
static unsigned pattern_rnd(unsigned n) {
    pattern_rng = pattern_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((pattern_rng >> 33) % n);
}

/* One s x s gray image of class cls (s >= 5). */
static void pattern_draw(unsigned char *img, int s, int cls) {
    for (int p = 0; p < s * s; p++) img[p] = (unsigned char)pattern_rnd(60);
    int a = 2 + (int)pattern_rnd((unsigned)s - 4), b = 2 + (int)pattern_rnd((unsigned)s - 4);
    for (int k = -2; k <= 2; k++) {
        if (cls == 0) img[a * s + b + k] = 230;
        if (cls == 1) img[(a + k) * s + b] = 230;
        if (cls == 3) img[(a + k) * s + b + k] = 230;
    }
    if (cls == 2)
        for (int y = -1; y <= 1; y++)
            for (int x = -1; x <= 1; x++) img[(a + y) * s + b + x] = 230;
}

#endif
