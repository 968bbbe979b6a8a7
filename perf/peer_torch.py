#!/usr/bin/env python3
"""PyTorch CPU peer for `kiln bench conv`: times the same convolution layers (AlexNet and the
narrow VGG16 at small inputs) forward, backward-data and backward-filter with 2 threads.

    python3 perf/peer_torch.py [--sizes 32,64] [--nets alexnet,vgg16n] [--batch 32]
                               [--min-ms 100] [--json FILE] [--rows]

--rows prints one machine-readable line per result ("row<TAB>shape<TAB>pass<TAB>ms<TAB>
GFLOP/s<TAB>reps"), which `kiln bench conv --peer` reads. Shape strings and the layer lists
must stay in step with perf/bench-conv.c (build_layers, layer_shape). Without torch it prints
a note and exits 0.
"""
import argparse
import json
import statistics
import sys
import time


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def layers(nets, inputs, batch):
    """(net, input, name, n, c, h, w, o, k, s, p) in kiln's order."""
    out = []
    for size in inputs:
        if "alexnet" in nets:
            s = size
            spec = [("conv1", 3, 64, 11, 4, 2, False), ("conv2", 64, 192, 5, 1, 2, True),
                    ("conv3", 192, 384, 3, 1, 1, True), ("conv4", 384, 256, 3, 1, 1, False),
                    ("conv5", 256, 256, 3, 1, 1, False)]
            for name, c, o, k, st, p, pool in spec:
                if pool:
                    s = (s - 3) // 2 + 1 if s >= 3 else 0
                if s < 1:
                    break
                out.append(("alexnet", size, name, batch, c, s, s, o, k, st, p))
                s = out_size(s, k, st, p)
        if "vgg16n" in nets:
            s, c = size, 3
            for b, (convs, width) in enumerate(zip([2, 2, 3, 3, 3], [32, 64, 96, 128, 128])):
                if s < 1:
                    break
                for j in range(convs):
                    out.append(("vgg16n", size, "b%dc%d" % (b + 1, j + 1), batch, c, s, s, width,
                                3, 1, 1))
                    c = width
                s //= 2
    return out


def shape_str(l):
    net, size, name, n, c, h, w, o, k, s, p = l
    return "%s@%d %s n=%d c=%d h=%d w=%d o=%d k=%d s=%d p=%d" % (net, size, name, n, c, h, w, o,
                                                                 k, s, p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--nets", default="alexnet,vgg16n")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--min-ms", type=float, default=100)
    ap.add_argument("--json")
    ap.add_argument("--rows", action="store_true")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("peer_torch: PyTorch is not installed; no torch-cpu results "
              "(pip install torch --index-url https://download.pytorch.org/whl/cpu)")
        return 0
    torch.set_num_threads(2)
    torch.manual_seed(0)
    results = []
    for l in layers(a.nets.split(","), [int(x) for x in a.sizes.split(",")], a.batch):
        net, size, name, n, c, h, w, o, k, s, p = l
        oh, ow = out_size(h, k, s, p), out_size(w, k, s, p)
        x = torch.randn(n, c, h, w)
        wt = torch.randn(o, c, k, k)
        b = torch.randn(o)
        dy = torch.randn(n, o, oh, ow)
        passes = {
            "fwd": lambda: F.conv2d(x, wt, b, stride=s, padding=p),
            "bwd_data": lambda: torch.nn.grad.conv2d_input(x.shape, wt, dy, stride=s, padding=p),
            "bwd_filter": lambda: torch.nn.grad.conv2d_weight(x, wt.shape, dy, stride=s,
                                                              padding=p),
        }
        flops = 2.0 * n * o * oh * ow * c * k * k
        for pname, fn in passes.items():
            with torch.no_grad():
                fn()  # warm-up
                times, total = [], 0.0
                while len(times) < 3 or (total < a.min_ms and len(times) < 100):
                    t0 = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t0) * 1e3)
                    total += times[-1]
            ms = statistics.median(times)
            r = {"op": "conv2d", "backend": "torch-cpu", "device": "host (2 threads)",
                 "shape": shape_str(l), "pass": pname, "ms": round(ms, 4),
                 "gflops": round(flops / (ms * 1e6), 2), "reps": len(times)}
            results.append(r)
            if a.rows:
                print("row\t%s\t%s\t%.4f\t%.2f\t%d" % (r["shape"], pname, ms, r["gflops"],
                                                      r["reps"]), flush=True)
            else:
                print("%-52s %-10s %9.3f ms %8.1f GFLOP/s" % (r["shape"], pname, ms, r["gflops"]),
                      flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.rows:
        totals = {}
        for r in results:
            key = r["shape"].split(" ")[0]
            totals[key] = totals.get(key, 0.0) + r["ms"]
        for key, ms in totals.items():
            print("total %s: %.1f ms (fwd + bwd_data + bwd_filter)" % (key, ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
