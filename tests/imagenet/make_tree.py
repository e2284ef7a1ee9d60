#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""A miniature ImageNet-style tree for tests/imagenet/run_imagenet.sh: DIR/train/<class>/*.JPEG
(10 classes x 20) and DIR/val/<class>/*.JPEG (10 x 6), odd sizes (23-97 px), each class with
an easy signal (its own colour and stripe direction under noise), one greyscale and one CMYK JPEG.
Usage: make_tree.py DIR"""
import colorsys
import os
import random
import sys

from PIL import Image


def image(label, rng):
    width, height = rng.randrange(23, 98), rng.randrange(23, 98)
    r, g, b = (int(255 * c) for c in colorsys.hsv_to_rgb(label / 10, 0.8, 0.9))
    vertical = label % 2 == 0
    pixels = []
    for y in range(height):
        for x in range(width):
            stripe = ((x if vertical else y) // 4) % 2
            noise = rng.randrange(-40, 41)
            scale = 1.0 if stripe else 0.55
            pixels.append(tuple(max(0, min(255, int(c * scale) + noise)) for c in (r, g, b)))
    picture = Image.new("RGB", (width, height))
    picture.putdata(pixels)
    return picture


def main(root):
    rng = random.Random(0)
    for split, count in (("train", 20), ("val", 6)):
        for label in range(10):
            folder = os.path.join(root, split, f"n{label:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                picture = image(label, rng)
                if split == "train" and label == 3 and i == 0:
                    picture = picture.convert("L")  # greyscale JPEG
                if split == "train" and label == 4 and i == 0:
                    picture = picture.convert("CMYK")  # CMYK JPEG
                picture.save(os.path.join(folder, f"{split}_{label}_{i}.JPEG"), quality=90)


if __name__ == "__main__":
    main(sys.argv[1])
