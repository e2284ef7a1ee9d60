#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""torchvision reference for benchmarks/bench_augment.cpp: the same two-view SimSiam recipes,
one image at a time, as the official code runs them.

    /usr/bin/python3 benchmarks/bench_augment_reference.py [--threads 1 2]

- "PIL": the official main_simsiam.py transform on PIL images (loader.GaussianBlur = PIL
  ImageFilter.GaussianBlur), ToTensor, Normalize; with N threads, N worker processes (as N
  DataLoader workers would be).
- "tensor": torchvision's tensor transforms per image (uint8 tensor in, float out, blur kernel
  23 at 224 / 3 at 32), torch.set_num_threads(N).
Same inputs as the C++ benchmark: 512 CIFAR-size images; 64 images of ~350x400.
"""
import argparse
import multiprocessing as mp
import random
import time

import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter


class PilGaussianBlur:  # simsiam/loader.py
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def pil_recipe(size, blur, mean, std):
    ops = [T.RandomResizedCrop(size, scale=(0.2, 1.0)),
           T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if blur:
        ops.append(T.RandomApply([PilGaussianBlur([0.1, 2.0])], p=0.5))
    ops += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def tensor_recipe(size, blur, mean, std):
    ops = [T.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=False), T.ConvertImageDtype(torch.float32),
           T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if blur:
        ops.append(T.RandomApply([T.GaussianBlur(23, (0.1, 2.0))], p=0.5))
    ops += [T.RandomHorizontalFlip(), T.Normalize(mean, std)]
    return T.Compose(ops)


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CIFAR = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])


def make_inputs():
    g = torch.Generator().manual_seed(0)
    cifar = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8) for _ in range(512)]
    imagenet = [torch.randint(0, 256, (3, 330 + (i * 7) % 41, 380 + (i * 11) % 41), generator=g,
                              dtype=torch.uint8) for i in range(64)]
    return cifar, imagenet


def to_pil(t):
    return Image.fromarray(t.permute(1, 2, 0).numpy())


_WORK = {}


def _pil_chunk(args):
    name, start, stop = args
    recipe, images = _WORK[name]
    for img in images[start:stop]:
        recipe(img), recipe(img)
    return stop - start


def run_pil(name, recipe, images, workers, min_time=3.0):
    _WORK[name] = (recipe, images)
    chunks = [(name, i, min(i + 16, len(images))) for i in range(0, len(images), 16)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_pil_chunk, chunks)  # warm up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_time:
            n += sum(pool.map(_pil_chunk, chunks))
        return n / (time.perf_counter() - start)


def run_tensor(recipe, images, threads, min_time=3.0):
    torch.set_num_threads(threads)
    for img in images[:4]:
        recipe(img)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        for img in images:
            recipe(img), recipe(img)
        n += len(images)
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cifar, imagenet = make_inputs()
    cifar_pil = [to_pil(t) for t in cifar]
    imagenet_pil = [to_pil(t) for t in imagenet]
    for threads in args.threads:
        torch.set_num_threads(1)
        print("threads=%d cifar32  PIL    %8.0f images/s" % (threads, run_pil(
            "c", pil_recipe(32, False, *CIFAR), cifar_pil, threads)))
        print("threads=%d imagenet PIL    %8.0f images/s" % (threads, run_pil(
            "i", pil_recipe(224, True, *IMAGENET), imagenet_pil, threads)))
        print("threads=%d cifar32  tensor %8.0f images/s" % (threads, run_tensor(
            tensor_recipe(32, False, *CIFAR), cifar, threads)))
        print("threads=%d imagenet tensor %8.0f images/s" % (threads, run_tensor(
            tensor_recipe(224, True, *IMAGENET), imagenet, threads)))


if __name__ == "__main__":
    main()
