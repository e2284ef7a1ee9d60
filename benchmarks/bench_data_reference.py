#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""torchvision reference for benchmarks/bench_data.cpp: ImageFolder + the official two-crop
transform (RandomResizedCrop(224, scale=(0.2, 1)), RandomHorizontalFlip, ToTensor) through a
PyTorch DataLoader with N worker processes, on the folder bench_data generates.

    build/benchmarks/bench_data --benchmark_filter=none   # generates the folder if needed
    /usr/bin/python3 benchmarks/bench_data_reference.py [--workers 1 2] [--folder DIR]
"""
import argparse
import time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as T


class TwoCropsTransform:  # simsiam/loader.py
    def __init__(self, base):
        self.base = base

    def __call__(self, x):
        return [self.base(x), self.base(x)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--folder", default="/tmp/simsiam_bench_jpegs")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    transform = TwoCropsTransform(T.Compose([T.RandomResizedCrop(224, scale=(0.2, 1.0)),
                                             T.RandomHorizontalFlip(), T.ToTensor()]))
    dataset = datasets.ImageFolder(args.folder, transform)
    for workers in args.workers:
        loader = torch.utils.data.DataLoader(dataset, batch_size=24, shuffle=True,
                                             num_workers=workers, drop_last=True,
                                             persistent_workers=True)
        for _ in loader:  # warm-up epoch: worker start-up is not counted
            pass
        start, images = time.perf_counter(), 0
        for _ in range(args.epochs):
            for (view1, view2), _labels in loader:
                images += view1.shape[0]
        rate = images / (time.perf_counter() - start)
        print(f"workers={workers} torchvision ImageFolder+DataLoader {rate:8.0f} images/s")


if __name__ == "__main__":
    main()
