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

usage: test_keras.py KILN WORKDIR. Exits 77 (skipped) when keras cannot be imported.
Building and saving models needs no accelerator backend: Keras' numpy backend is the default
here (KERAS_BACKEND=jax passes too, but JAX compiles every weight initializer: a minute instead of
10 on two cores).
"""

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

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
