#!/usr/bin/env python3
"""Builds a class-folder set of real-photo JPEGs for `kiln data bench`, to check that the
synthetic photos of `kiln data gen` decode like real ones.

The photos are the sample images shipped inside the scikit-learn, scikit-image and
matplotlib wheels (downloaded from PyPI with `pip download`, not installed): china, flower,
grace_hopper, astronaut, chelsea, coffee, rocket and the two motorcycle views. Each output
is a random 500x375 window of one photo scaled by 1-1.3x its cover size, flipped at random,
saved at quality 90 with 4:2:0 chroma (ImageNet-like). Needs Pillow and network access to
PyPI; prints the mean file size.

  python3 perf/make_photo_set.py --out /tmp/photos --count 1000
"""
import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import zipfile

PHOTOS = {
    "scikit-learn": ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"],
    "matplotlib": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    "scikit-image": [
        "skimage/data/astronaut.png",
        "skimage/data/chelsea.png",
        "skimage/data/coffee.png",
        "skimage/data/rocket.jpg",
        "skimage/data/motorcycle_left.png",
        "skimage/data/motorcycle_right.png",
    ],
}


def fetch(wheels):
    """The photos as PIL images, read straight out of the downloaded wheels."""
    from PIL import Image

    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheels]
        + sorted(PHOTOS),
        check=True,
    )
    images = []
    for name in sorted(os.listdir(wheels)):
        with zipfile.ZipFile(os.path.join(wheels, name)) as z:
            members = set(z.namelist())
            for paths in PHOTOS.values():
                for p in paths:
                    if p in members:
                        images.append(Image.open(io.BytesIO(z.read(p))).convert("RGB"))
    return images


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--size", default="500x375")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    try:
        from PIL import Image
    except ImportError:
        print("make_photo_set: needs Pillow (pip install pillow)", file=sys.stderr)
        return 1
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as wheels:
        photos = fetch(wheels)
    if not photos:
        print("make_photo_set: no photos found in the wheels", file=sys.stderr)
        return 1
    rng = random.Random(a.seed)
    total = 0
    for i in range(a.count):
        im = photos[i % len(photos)]
        s = max(w / im.width, h / im.height) * rng.uniform(1.0, 1.3)
        big = im.resize((max(w, round(im.width * s)), max(h, round(im.height * s))), Image.BICUBIC)
        x, y = rng.randint(0, big.width - w), rng.randint(0, big.height - h)
        crop = big.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        d = os.path.join(a.out, "class%02d" % (i % a.classes))
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "img%06d.jpg" % i)
        crop.save(path, quality=a.quality, subsampling="4:2:0")
        total += os.path.getsize(path)
    print("wrote %d JPEGs of %dx%d from %d photos (quality %d, mean %.0f KiB) in %s"
          % (a.count, w, h, len(photos), a.quality, total / a.count / 1024, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
