"""Keras models through kiln, built with Keras itself into a work directory:

(a) the story's VGG16: augmentation (a Sequential) and Rescaling applied to the input, the
    first Conv2D built on the raw `inputs`. Keras leaves both layers out of the model, so its
    .keras file only shows the effect, which `kiln lint` warns about (--strict: fails); the
    graph written by frontend/keras/kiln_keras.py keeps them, and `kiln lint` refuses it
    naming `rescaling`, the Sequential and the first Conv2D.
(b) a correct VGG-like functional model and a Sequential model: `kiln lint` passes and
    `kiln summary` gives Keras' parameter count and output shape (.keras stored and deflated,
    and model.to_json()).
(c) padding="same" with stride 2 (and 3) on odd sizes: every layer's output shape is Keras'.
(d) weights: a small CNN, a Sequential nesting a Sequential and the narrow VGG16 under random
    weights, saved as .keras: kiln predict (and kiln eval) with the file's own weights against
    Keras' model.predict on the same pixels; a shape mismatch names the layer and both shapes.

usage: test_keras.py KILN WORKDIR. Exits 77 (skipped) when keras cannot be imported.
Building and saving models needs no accelerator backend: Keras' numpy backend is the default
here (KERAS_BACKEND=jax passes too, but JAX compiles every weight initializer: a minute instead of
10 on two cores).
"""

import json
import os
import re
import subprocess
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "numpy")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
try:
    import keras
    from keras import layers
except ImportError as e:
    print(f"keras is not installed ({e}): skipped (pip install keras jax[cpu])")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "frontend", "keras"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import kiln_keras  # noqa: E402

sys.path.insert(0, os.path.join(HERE, ".."))
import numpy as np  # noqa: E402
from jpeg_gray import jpeg_gray  # noqa: E402

KILN, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}\n{detail}")


def kiln(*args):
    p = subprocess.run([KILN, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def path(name):
    return os.path.join(WORK, name)


def deflated(src, dst):
    """The same archive with config.json and metadata.json deflated (Keras stores them)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            small = item.filename.endswith(".json")
            zout.writestr(
                item.filename,
                zin.read(item.filename),
                zipfile.ZIP_DEFLATED if small else zipfile.ZIP_STORED,
            )
    return dst


# ---- (a) the story ----
# The article's model, with the narrow VGG16's widths (32-64-96-128-128) on Fashion-MNIST's
# 28x28x1; pooling with padding="same" keeps 28-14-7-4-2-1 instead of vanishing.
data_augmentation = keras.Sequential(
    [
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
    ]
)


def make_vgg16_model(input_shape, num_classes, widths=(32, 64, 96, 128, 128)):
    inputs = keras.Input(shape=input_shape)
    x = data_augmentation(inputs)
    x = layers.Rescaling(1.0 / 255)(x)

    x = layers.Conv2D(widths[0], 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(widths[0], 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    for w, n in zip(widths[1:], (2, 3, 3, 3)):
        for _ in range(n):
            x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)

    x = layers.Flatten()(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


story = make_vgg16_model((28, 28, 1), 10)
story.save(path("story.keras"))
added = kiln_keras.save_graph(story, path("story.json"))
first_conv = next(l.name for l in story.layers if isinstance(l, layers.Conv2D))
seq = data_augmentation.name
check(
    "rescaling" not in [l.name for l in story.layers] and seq not in [l.name for l in story.layers],
    "Keras leaves the unused layers out of the model",
)
check(added == [seq, "rescaling"], "kiln_keras finds the unused layers", repr(added))

rc, out = kiln("lint", path("story.json"))
print(out)
check(rc == 1, "kiln lint refuses the story's graph", out)
check(
    "node 'rescaling' (rescale) is never used" in out,
    "the lint names the unused Rescaling",
    out,
)
check(f"{seq}.layers[0]: node 'random_flip'" in out, "the lint names the augmentation Sequential", out)
check(
    f"'{first_conv}' (conv2d, layers[1]) most likely meant to read 'rescaling' instead of "
    "'input_layer'" in out,
    "the lint names the first Conv2D and what it meant to read",
    out,
)
check(
    f"the first convolution '{first_conv}' reads the raw input 'input_layer' directly" in out,
    "the lint tells the story",
    out,
)

for f in (path("story.keras"), deflated(path("story.keras"), path("story-deflated.keras"))):
    rc, out = kiln("lint", f)
    print(out)
    check(rc == 0, f"{f}: the lint of the saved model only warns", out)
    check(
        f"node '{first_conv}' (conv2d): reads raw integer-range input (0-255)" in out
        and "layers.Rescaling(1./255)" in out,
        f"{f}: the lint warns that raw pixels reach the first Conv2D",
        out,
    )
    rc, out = kiln("lint", "--strict", f)
    check(rc == 1, f"{f}: --strict fails on the warning", out)


# ---- (b) correct models: parameters and output shape ----
def totals(model_file, *extra):
    rc, out = kiln("summary", "--model", model_file, *extra)
    m = re.search(r"Total parameters:\s+([\d,]+)", out)
    rows = {}
    for line in out.splitlines():
        r = re.match(r"^(\S+)\s+\S+\s+\(N, ([\d, ]+)\)", line)
        if r:
            rows[r.group(1)] = tuple(int(v) for v in r.group(2).split(","))
    outs = [l for l in out.splitlines() if "[output]" in l]
    oshape = None
    if outs:
        r = re.match(r"^\S+\s+\S+\s+\(N, ([\d, ]+)\)", outs[0])
        oshape = tuple(int(v) for v in r.group(1).split(",")) if r else None
    return rc, out, int(m.group(1).replace(",", "")) if m else None, rows, oshape


def nchw(shape):
    """Keras' (None, H, W, C) / (None, F) as kiln's (C, H, W) / (F,)."""
    s = tuple(shape[1:])
    return (s[2], s[0], s[1]) if len(s) == 3 else s


def trainable(model):
    return sum(int(v.numpy().size) for v in model.trainable_weights)


def check_model(model, name, bn_free):
    model.save(path(name + ".keras"))
    with open(path(name + ".json"), "w") as f:
        f.write(model.to_json())
    files = [path(name + ".keras"), deflated(path(name + ".keras"), path(name + "-deflated.keras"))]
    for f in files + [path(name + ".json")]:
        rc, out = kiln("lint", "--strict", f)
        check(rc == 0, f"{f}: lint passes", out)
        rc, out, params, rows, oshape = totals(f)
        check(rc == 0, f"{f}: summary", out)
        check(
            params == trainable(model),
            f"{f}: parameters {params} = Keras' trainable {trainable(model)}",
            out,
        )
        if bn_free:
            check(params == model.count_params(), f"{f}: = count_params() {model.count_params()}")
        check(
            oshape == nchw(model.output_shape),
            f"{f}: output shape {oshape} = Keras' {model.output_shape}",
            out,
        )


def vgg_like():
    aug = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomTranslation(0.1, 0.1)], name="augment"
    )
    inputs = keras.Input(shape=(32, 32, 3))
    x = aug(inputs)
    x = layers.Rescaling(1.0 / 127.5, offset=-1)(x)
    for w in (16, 32):
        x = layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        y = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.Add()([x, y])
        x = layers.MaxPooling2D()(x)
    a = layers.Conv2D(16, 1, activation="relu")(x)
    b = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Concatenate()([a, b])
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="vgg_like")


def sequential():
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.RandomContrast(0.2),
            layers.Normalization(mean=33.3, variance=76.4**2),
            layers.Conv2D(8, 5, strides=2, activation="relu"),
            layers.Conv2D(16, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(20, activation="tanh"),
            layers.Dense(7, activation="softmax"),
        ],
        name="seq",
    )


check_model(vgg_like(), "vgg_like", bn_free=False)
check_model(sequential(), "seq", bn_free=True)


# ---- (c) padding="same" with strides on odd sizes ----
def same_strides():
    inputs = keras.Input(shape=(29, 31, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 15x16
    x = layers.Conv2D(4, 4, strides=2, padding="same")(x)  # even kernel: 8x8
    x = layers.Conv2D(4, (3, 5), strides=(3, 2), padding="same")(x)
    x = layers.Conv2D(4, 3, dilation_rate=2, padding="same")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.AveragePooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3)(x)
    return keras.Model(inputs, outputs, name="same_strides")


for size in ((29, 31), (27, 27), (33, 17)):
    model = same_strides() if size == (29, 31) else None
    if model is None:
        inputs = keras.Input(shape=(*size, 1))
        x = inputs
        for k, s in ((3, 2), (2, 2), (5, 3), (1, 2)):
            x = layers.Conv2D(2, k, strides=s, padding="same")(x)
        x = layers.MaxPooling2D(2, strides=2, padding="same")(x)
        x = layers.Flatten()(x)
        model = keras.Model(inputs, layers.Dense(3)(x), name=f"same_{size[0]}x{size[1]}")
    model.save(path(model.name + ".keras"))
    rc, out, params, rows, oshape = totals(path(model.name + ".keras"))
    check(rc == 0, f"{model.name}: summary", out)
    check(params == model.count_params(), f"{model.name}: parameters", out)
    for layer in model.layers:
        want = nchw(layer.output.shape)
        got = rows.get(layer.name)
        check(got == want, f"{model.name}: '{layer.name}' shape {got} = Keras' {want}", out)



# ---- (d) weights: kiln's forward pass under the .keras file's weights against model.predict ----
# Every weight random (BatchNormalization's statistics too), so a kernel read in the wrong
# layout, a Flatten order mixed up or a statistic swapped moves the probabilities by far more
# than the tolerance. Both sides compute in fp32 with different summation orders (and Keras'
# numpy backend convolves through other code than kiln's backends): a few ulps per layer, which
# reach the probabilities as about 1e-7 (measured: 3e-8 for the small CNN, 1.5e-7 for the
# nested Sequential, 1.1e-7 for the VGG16; printed below). TOL = 1e-5 leaves a margin of 100x over that, and a layout mistake is far
# above it (the test measures what a Flatten order left unconverted would give).
TOL = 1e-5
N_IMAGES = 6


def randomize(model, rng):
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, layers.BatchNormalization):
            c = ws[0].shape
            new = [
                rng.uniform(0.5, 1.5, c),
                rng.normal(0, 0.2, c),
                rng.normal(0, 0.2, c),
                rng.uniform(0.5, 1.5, c),
            ]
        else:
            k = ws[0]
            fan_in = int(np.prod(k.shape[:-1]))
            new = [rng.normal(0, np.sqrt(2.0 / fan_in), k.shape)] + [
                rng.normal(0, 0.1, w.shape) for w in ws[1:]
            ]
        layer.set_weights([w.astype(np.float32) for w in new])


def small_cnn():
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(8, 3, activation="relu")(x)  # 26x26
    x = layers.MaxPooling2D()(x)  # 13x13
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)  # 7x7
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def vgg16_narrow(widths=(32, 64, 96, 128, 128)):
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for w, n in zip(widths, (2, 2, 3, 3, 3)):
        for _ in range(n):
            x = layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="vgg16_narrow")


def nested():
    """A Sequential holding a Sequential: Keras keys its weights layers/sequential/layers/..."""
    block = keras.Sequential(
        [layers.Conv2D(6, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU()],
        name="block",
    )
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Rescaling(1.0 / 255),
            block,
            layers.Conv2D(8, 3, strides=2, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ],
        name="nested",
    )


def check_weights(model, rng):
    randomize(model, rng)
    for layer in model.layers:
        if isinstance(layer, keras.Sequential):
            randomize(layer, rng)
    model.save(path(model.name + ".keras"))
    # Smooth random images: the JPEG round trip changes them, so Keras gets the pixels kiln read
    # (kiln predict --json prints them).
    yy, xx = np.mgrid[0:28, 0:28]
    images = []
    for i in range(N_IMAGES):
        a, b, c = rng.uniform(0.1, 0.5, 3)
        img = 127.5 + 120 * np.sin(a * xx + b * yy + c * i) * np.cos(b * xx - a * yy)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        images.append(path(f"{model.name}-{i}.jpg"))
        with open(images[-1], "wb") as f:
            f.write(jpeg_gray(img))
    rc, out = kiln("predict", "--model", path(model.name + ".keras"), "--json", *images)
    check(rc == 0, f"{model.name}: kiln predict with the .keras file's weights", out)
    if rc:
        return
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    check(len(rows) == N_IMAGES, f"{model.name}: one result per image", out)
    px = np.array([r["pixels"] for r in rows], np.float32).reshape(-1, 28, 28, 1)
    kp = np.array([r["probabilities"] for r in rows], np.float64)
    ref = np.asarray(model.predict(px, verbose=0), np.float64)
    err = float(np.abs(kp - ref).max())
    spread = float(np.abs(ref - ref.mean(axis=0)).max())
    print(f"{model.name}: max |p_kiln - p_keras| = {err:.3g} over {N_IMAGES} images "
          f"(probabilities vary by up to {spread:.3g} between images)")
    check(err < TOL, f"{model.name}: max abs error {err:.3g} < {TOL}", f"{kp}\n{ref}")
    check(spread > 100 * TOL, f"{model.name}: the outputs depend on the input ({spread:.3g})")
    # What a Dense after a Flatten would give with its inputs left in Keras' (h, w, c) order:
    # Keras under the kernel whose rows are taken in kiln's (c, h, w) order.
    flat = next(l for l in model.layers if isinstance(l, layers.Flatten))
    h, w, c = flat.input.shape[1:]
    if h * w > 1 and isinstance(model.layers[model.layers.index(flat) + 1], layers.Dense):
        dense = model.layers[model.layers.index(flat) + 1]
        kernel, bias = dense.get_weights()
        order = np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        dense.set_weights([kernel[order], bias])
        wrong = float(np.abs(np.asarray(model.predict(px, verbose=0)) - ref).max())
        dense.set_weights([kernel, bias])
        print(f"{model.name}: with Flatten's order not converted the error would be {wrong:.3g}")
        check(wrong > 100 * TOL, f"{model.name}: the test sees a Flatten order mistake ({wrong:.3g})")
    # kiln eval on the same pixels (IDX files) labelled with Keras' classes: accuracy 1.
    idx = path(model.name + "-images-idx3-ubyte")
    with open(idx, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (len(rows), 28, 28)))
        f.write(px.astype(np.uint8).tobytes())
    with open(path(model.name + "-labels-idx1-ubyte"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + len(rows).to_bytes(4, "big"))
        f.write(ref.argmax(axis=1).astype(np.uint8).tobytes())
    rc, out3 = kiln("eval", "--model", path(model.name + ".keras"), "--data", idx)
    check(rc == 0 and "accuracy 1.0000" in out3, f"{model.name}: kiln eval of the .keras file", out3)
    # The same weights given explicitly: --checkpoint MODEL.keras.
    rc, out2 = kiln("predict", "--model", path(model.name + ".keras"), "--checkpoint",
                    path(model.name + ".keras"), "--json", images[0])
    one = [json.loads(line) for line in out2.splitlines() if line.startswith("{")]
    check(
        rc == 0 and len(one) == 1 and np.abs(np.array(one[0]["probabilities"]) - ref[0]).max() < TOL,
        f"{model.name}: --checkpoint MODEL.keras gives the same result",
        out2,
    )


rng = np.random.default_rng(7)
check_weights(small_cnn(), rng)
check_weights(nested(), rng)
check_weights(vgg16_narrow(), rng)



def conv_dense(filters):
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(filters, 3, name="conv")(x)
    return keras.Model(inputs, layers.Dense(10)(layers.Flatten()(x)))


# A weights file that does not fit the model names the layer and both shapes.
conv_dense(5).save(path("five.keras"))
conv_dense(4).save_weights(path("four.weights.h5"))
with open(path("blank.jpg"), "wb") as f:
    f.write(jpeg_gray(np.zeros((28, 28), np.uint8)))
rc, out = kiln("predict", "--model", path("five.keras"), "--checkpoint", path("four.weights.h5"),
               path("blank.jpg"))
check(
    rc == 1 and "layer 'conv'" in out and "(3, 3, 1, 4)" in out and "(3, 3, 1, 5)" in out,
    "a shape mismatch names the layer and both shapes",
    out,
)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
