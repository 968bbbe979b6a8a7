#!/usr/bin/env python3
"""kiln export checked against onnxruntime.

For alexnet (at 64x64), vgg16-narrow (28x28) and tests/onnx/ops.kiln (every mapped node type):
train a few steps on Fashion-MNIST's t10k images, export the checkpoint to ONNX, run
onnx.checker.check_model (with shape inference), and run onnxruntime on real Fashion-MNIST
images, comparing with kiln predict on the same images. `kiln predict --json` gives the exact
input the model read (the eval transform resizes 28x28 to 64x64 for alexnet) and the
probabilities to float precision. Also: the logits output (no --softmax) and an unmappable
node's error message.

Tolerance. Both sides compute in fp32 with different operation orders (kiln's cpu backend
sums each dot product left to right; onnxruntime's MLAS blocks and vectorizes with FMAs), so
every convolution and GEMM output differs by a few ulps, and the differences carry through the
layers. Measured here: at most ~1e-6 on log-probabilities of magnitude up to ~7, i.e. a few
ulps. The check compares log-probabilities (log p = z - logsumexp z: the logit error itself,
not damped by the flat softmax of a barely trained net) within 2e-5 * max(1, max |log p|),
about 170 ulps at 1 and a 20x-100x margin over what was measured, and probabilities within
1e-5. Mapping mistakes are far above it: moving one pixel of a convolution's padding to the
other side gave 0.1, counting an average pool's padding wrongly 0.01-0.08, a LeakyRelu slope
10% off 7e-3 (all measured by editing the exported ops model). Exit 77 (ctest's skip) only
when the Python modules are missing.

usage: check_export.py KILN WORKDIR [IDX_IMAGES]
"""
import gzip
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:
    print(f"SKIP: {e} (pip install onnx onnxruntime numpy)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from jpeg_gray import jpeg_gray  # noqa: E402

TOL_LOG = 2e-5  # relative to max(1, max |log p|)
TOL_PROB = 1e-5
N_IMAGES = 8


def read_idx_images(path, count):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(3))
    step = n // count
    return [np.frombuffer(data, np.uint8, h * w, 16 + h * w * k * step).reshape(h, w)
            for k in range(count)]


# ---- kiln ----

def run(kiln, *args, ok=True):
    env = dict(os.environ, KILN_BACKEND="cpu")  # the reference backend: no OpenCL needed
    p = subprocess.run([kiln, *args], capture_output=True, text=True, env=env)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: kiln {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def kiln_predict(kiln, model, ckpt, images):
    p = run(kiln, "predict", "--json", "--model", model, "--checkpoint", ckpt, *images)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if len(rows) != len(images):
        sys.exit(f"FAIL: kiln predict --json gave {len(rows)} rows for {len(images)} images")
    x = np.stack([np.array(r["pixels"], np.float32).reshape(r["shape"]).transpose(2, 0, 1)
                  for r in rows])
    return x, np.array([r["probabilities"] for r in rows], np.float32)


def onnx_run(path, x):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    if inp.shape[0] != "N" or inp.type != "tensor(float)":
        sys.exit(f"FAIL: {path}: input {inp.name} {inp.type} {inp.shape}: want a dynamic batch")
    return sess.run(None, {inp.name: x})[0], model


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def compare(name, kiln_probs, onnx_probs=None, onnx_logits=None):
    want = np.log(kiln_probs.astype(np.float64))
    if onnx_logits is not None:
        got = log_softmax(onnx_logits)
    else:
        got = np.log(onnx_probs.astype(np.float64))
    err_log = float(np.abs(got - want).max())
    tol_log = TOL_LOG * max(1.0, float(np.abs(want).max()))
    line = f"{name}: max abs error log-probabilities {err_log:.3g} (tolerance {tol_log:.3g})"
    ok = err_log <= tol_log
    if onnx_probs is not None:
        err_p = float(np.abs(onnx_probs - kiln_probs).max())
        line += f", probabilities {err_p:.3g} (tolerance {TOL_PROB:g})"
        ok = ok and err_p <= TOL_PROB
    agree = int((want.argmax(1) == got.argmax(1)).sum())
    print(f"{line}; top-1 agrees on {agree}/{len(want)}")
    return ok


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    kiln, work = sys.argv[1], sys.argv[2]
    idx = (sys.argv[3] if len(sys.argv) > 3
           else "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    if not os.path.exists(idx):
        sys.exit(f"FAIL: {idx} is missing (Debian package dataset-fashion-mnist)")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")

    images = []
    for k, img in enumerate(read_idx_images(idx, N_IMAGES)):
        path = os.path.join(work, f"t10k-{k}.jpg")
        with open(path, "wb") as f:
            f.write(jpeg_gray(img))
        images.append(path)

    ops = os.path.join(HERE, "ops.kiln")
    cases = [("alexnet", "alexnet", ["--input", "64x64"]),
             ("vgg16-narrow", "vgg16-narrow", []),
             ("ops", ops, [])]
    ok = True
    for name, model, extra in cases:
        out = os.path.join(work, name)
        run(kiln, "train", "--model", model, "--data", idx, "--max-steps", "3", "--batch", "16",
            "--seed", "7", "--out", out, *extra)
        ckpt = os.path.join(out, "last.safetensors")
        x, kiln_probs = kiln_predict(kiln, model, ckpt, images)
        probs_path = os.path.join(work, f"{name}.onnx")
        run(kiln, "export", "--model", model, "--checkpoint", ckpt, "--onnx", probs_path,
            "--softmax")
        onnx_probs, m = onnx_run(probs_path, x)
        print(f"{name}: checker passed: {len(m.graph.node)} nodes, opset "
              f"{m.opset_import[0].version}, input {list(x.shape[1:])}")
        ok &= compare(name, kiln_probs, onnx_probs=onnx_probs)
        if name != "alexnet":
            logits_path = os.path.join(work, f"{name}-logits.onnx")
            run(kiln, "export", "--model", model, "--checkpoint", ckpt, "--onnx", logits_path)
            onnx_logits, _ = onnx_run(logits_path, x)
            ok &= compare(f"{name} (logits)", kiln_probs, onnx_logits=onnx_logits)
        if name == "ops":
            ops_ckpt = ckpt

    # An unmappable node: the error names the node, its type and its line.
    bad = os.path.join(work, "even-lrn.kiln")
    with open(ops) as f:
        text = f.read().replace("lrn(s3, size=3)", "lrn(s3, size=4)")
    with open(bad, "w") as f:
        f.write(text)
    line = text[:text.index("size=4")].count("\n") + 1
    p = run(kiln, "export", "--model", bad, "--checkpoint", ops_ckpt, "--onnx",
            os.path.join(work, "bad.onnx"), ok=False)
    want = f"even-lrn.kiln:{line}: node 'l3' (lrn)"
    if p.returncode != 1 or want not in p.stderr or os.path.exists(os.path.join(work, "bad.onnx")):
        print(f"FAIL: unmappable node: exit {p.returncode}, stderr {p.stderr!r}, want {want!r}")
        ok = False
    else:
        print(f"unmappable node: {p.stderr.strip()}")
    if not ok:
        sys.exit("FAIL: kiln and onnxruntime disagree beyond the tolerance")
    print("PASS")


if __name__ == "__main__":
    main()
