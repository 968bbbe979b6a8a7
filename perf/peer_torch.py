#!/usr/bin/env python3
"""PyTorch CPU peer for `kiln bench`: times, with 2 threads, the same convolution layers
(forward, backward-data, backward-filter) and full training steps of the same models.

    python3 perf/peer_torch.py --layer SHAPE [--layer SHAPE ...] [--min-ms 100] [--json FILE]
                               [--rows]
    python3 perf/peer_torch.py --train MODEL [--input 64] [--batch 32] [--classes 10]
                               [--min-ms 1000] [--rows]

Conv layers are kiln's shape strings ("vgg16n@32 b1c1 n=32 c=3 h=32 w=32 o=32 k=3 s=1 p=1"):
`kiln bench` and `kiln bench conv --peer` pass theirs (perf/bench-cases.h) with --layer, so
both sides time one list. --train builds the zoo model (frontend/zoo/alexnet.kiln, vgg16-narrow.kiln)
in PyTorch and times forward + backward + SGD update (momentum 0.9, weight decay 5e-4) on a
uint8 NHWC batch rescaled by 1/255, as kiln's training step does.

--rows prints one machine-readable line per result, which kiln reads:
row<TAB>op<TAB>shape<TAB>ms<TAB>ms_min<TAB>ms_max<TAB>runs<TAB>GFLOP/s<TAB>images/s
(op: conv2d, conv2d_bwd_data, conv2d_bwd_filter or train_step). Without torch it prints a
note and exits 0.
"""
import argparse
import json
import re
import statistics
import sys
import time

SHAPE = re.compile(r"^(\S+)@(\d+) (\S+) n=(\d+) c=(\d+) h=(\d+) w=(\d+) o=(\d+) k=(\d+) "
                   r"s=(\d+) p=(\d+)$")


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def timed(fn, min_ms, min_runs=3, warmup=1):
    for _ in range(warmup):
        fn()
    times, total = [], 0.0
    while len(times) < min_runs or (total < min_ms and len(times) < 100):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        total += times[-1]
    return statistics.median(times), min(times), max(times), len(times)


def emit(a, results, op, shape, t, gflops, ips=0.0):
    ms, lo, hi, runs = t
    results.append({"op": op, "backend": "torch-cpu", "device": "host (2 threads)",
                    "shape": shape, "ms": round(ms, 4), "ms_min": round(lo, 4),
                    "ms_max": round(hi, 4), "runs": runs, "gflops": round(gflops, 2),
                    "images_per_s": round(ips, 2)})
    if a.rows:
        print("row\t%s\t%s\t%.4f\t%.4f\t%.4f\t%d\t%.2f\t%.2f" % (op, shape, ms, lo, hi, runs,
                                                               gflops, ips), flush=True)
    else:
        print("%-17s %-58s %9.3f ms %8.1f GFLOP/s%s" % (op, shape, ms, gflops,
                                                        " %8.1f images/s" % ips if ips else ""),
              flush=True)


def conv_layers(a, torch, results):
    import torch.nn.functional as F
    for shape in a.layer:
        m = SHAPE.match(shape)
        if not m:
            print("peer_torch: cannot parse layer '%s'" % shape)
            continue
        n, c, h, w, o, k, s, p = (int(x) for x in m.groups()[3:])
        oh, ow = out_size(h, k, s, p), out_size(w, k, s, p)
        x, wt, b = torch.randn(n, c, h, w), torch.randn(o, c, k, k), torch.randn(o)
        dy = torch.randn(n, o, oh, ow)
        passes = [
            ("conv2d", lambda: F.conv2d(x, wt, b, stride=s, padding=p)),
            ("conv2d_bwd_data",
             lambda: torch.nn.grad.conv2d_input(x.shape, wt, dy, stride=s, padding=p)),
            ("conv2d_bwd_filter",
             lambda: torch.nn.grad.conv2d_weight(x, wt.shape, dy, stride=s, padding=p)),
        ]
        flops = 2.0 * n * o * oh * ow * c * k * k
        for op, fn in passes:
            with torch.no_grad():
                t = timed(fn, a.min_ms)
            emit(a, results, op, shape, t, flops / (t[0] * 1e6))


def build_model(torch, name, input_size, classes):
    """The zoo's architectures: frontend/zoo/alexnet.kiln and vgg16-narrow.kiln."""
    nn = torch.nn
    layers = []
    if name == "alexnet":
        spec = [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
                (256, 3, 1, 1, False), (256, 3, 1, 1, True)]
        c = 3
        for o, k, s, p, pool in spec:
            layers += [nn.Conv2d(c, o, k, s, p), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            c = o
        head = lambda f: [nn.Flatten(), nn.Dropout(0.5), nn.Linear(f, 4096), nn.ReLU(inplace=True),
                          nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                          nn.Linear(4096, classes)]
    elif name == "vgg16-narrow":
        c = 3
        for convs, width in zip([2, 2, 3, 3, 3], [32, 64, 96, 128, 128]):
            for _ in range(convs):
                layers += [nn.Conv2d(c, width, 3, 1, 1), nn.ReLU(inplace=True)]
                c = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        head = lambda f: [nn.Flatten(), nn.Linear(f, 4096), nn.ReLU(inplace=True),
                          nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                          nn.Dropout(0.5), nn.Linear(4096, classes)]
    else:
        raise SystemExit("peer_torch: --train knows alexnet and vgg16-narrow, not '%s'" % name)
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(1, 3, input_size, input_size)).numel()
    model = nn.Sequential(features, *head(flat))
    for mod in model.modules():  # He init, as kiln's zoo
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            nn.init.zeros_(mod.bias)
    return model


def forward_flops(torch, model, input_size):
    """Multiply-adds x 2 of the conv and dense layers, per image."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels
            total[0] += 2.0 * out[0].numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total[0] += 2.0 * mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 3, input_size, input_size))
        model.train()
    for h in hooks:
        h.remove()
    return total[0]


def train_step(a, torch, results):
    model = build_model(torch, a.train, a.input, a.classes)
    flops = forward_flops(torch, model, a.input)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(11)
    images = torch.randint(0, 256, (a.batch, a.input, a.input, 3), dtype=torch.uint8, generator=g)
    labels = torch.arange(a.batch) % a.classes

    def step():
        x = images.permute(0, 3, 1, 2).float().mul_(1.0 / 255)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()

    t = timed(step, a.min_ms, min_runs=5, warmup=2)
    shape = "%s %dx%dx3 b%d" % (a.train, a.input, a.input, a.batch)
    emit(a, results, "train_step", shape, t, 3 * flops * a.batch / (t[0] * 1e6),
         1e3 * a.batch / t[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", action="append", help="a kiln conv layer shape string")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train", metavar="MODEL")
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--min-ms", type=float, default=None)
    ap.add_argument("--json")
    ap.add_argument("--rows", action="store_true")
    a = ap.parse_args()
    if not a.train and not a.layer:
        ap.error("give --layer SHAPE (conv layers) or --train MODEL")
    if a.min_ms is None:
        a.min_ms = 1000 if a.train else 100
    try:
        import torch
    except ImportError:
        print("peer_torch: PyTorch is not installed; no torch-cpu results "
              "(pip install torch --index-url https://download.pytorch.org/whl/cpu)")
        return 0
    torch.set_num_threads(2)
    torch.manual_seed(0)
    results = []
    if a.train:
        train_step(a, torch, results)
    else:
        conv_layers(a, torch, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
