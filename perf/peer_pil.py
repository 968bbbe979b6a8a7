#!/usr/bin/env python3
"""PIL peer for `kiln data bench --peer`: the work a PIL/torchvision loader does per image
(decode, random resized crop to SIZE with bilinear resampling, horizontal flip, and normalize
when numpy is present) on one core. Prints 'peer_pil: ... images/s: N'."""
import argparse
import math
import os
import random
import sys
import time


def list_images(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files = []
    for label, c in enumerate(classes):
        for dirpath, dirnames, names in sorted(os.walk(os.path.join(root, c))):
            dirnames.sort()
            for n in sorted(names):
                if n.lower().endswith((".jpg", ".jpeg")):
                    files.append((os.path.join(dirpath, n), label))
    return files


def rrc_box(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision RandomResizedCrop.get_params."""
    area = w * h
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*lr))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            y = rng.randint(0, h - ch)
            x = rng.randint(0, w - cw)
            return x, y, cw, ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="class-folder JPEG directory")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--decode-only", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        from PIL import Image
    except ImportError:
        print("peer_pil: skipped: PIL is not installed (pip install pillow)")
        return 0
    try:
        import numpy as np
    except ImportError:
        np = None
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    files = list_images(a.data)
    if not files:
        print("peer_pil: no JPEGs under %s" % a.data)
        return 1
    rng = random.Random(a.seed)
    mean = std = None
    if np is not None:
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
    flip = Image.Transpose.FLIP_LEFT_RIGHT if hasattr(Image, "Transpose") else Image.FLIP_LEFT_RIGHT
    bilinear = Image.Resampling.BILINEAR if hasattr(Image, "Resampling") else Image.BILINEAR

    def one(i):
        path, label = files[i % len(files)]
        with open(path, "rb") as f:
            img = Image.open(f)
            img = img.convert("RGB")
        if a.decode_only:
            return
        x, y, w, h = rrc_box(img.width, img.height, rng)
        img = img.resize((a.size, a.size), bilinear, box=(x, y, x + w, y + h))
        if rng.random() < 0.5:
            img = img.transpose(flip)
        if np is not None:
            arr = (np.asarray(img, dtype=np.float32) - mean) / std
            del arr

    # Warm-up, untimed, as `kiln data bench` does: a few batches' worth.
    for i in range(min(a.images, 256)):
        one(len(files) - 1 - i % len(files))
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(a.images):
        one(i)
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    work = "decode" if a.decode_only else "decode+rrc%d+flip%s" % (
        a.size, "+normalize" if np is not None else " (no numpy: normalize skipped)")
    print("peer_pil: %s on one core, %d images in %.2f s, images/s: %.1f, images/cpu-s: %.1f"
          % (work, a.images, dt, a.images / dt, a.images / dc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
