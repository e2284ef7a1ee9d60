#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The PyTorch reference for benchmarks/bench_train.cpp: the official SimSiam training step
(facebookresearch/simsiam main_simsiam.py and builder.py) on the same two networks, images/s with
1 and 2 threads. Run with Debian's python3-torch on the same machine:

    /usr/bin/python3 benchmarks/bench_train_reference.py
    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
      /usr/bin/python3 benchmarks/bench_train_reference.py    # the C++ programs' malloc settings

One step: two views already in memory (random, fixed seed), two forward passes, the official loss
-(cos(p1, z2.detach()).mean() + cos(p2, z1.detach()).mean()) * 0.5, zero_grad, backward, SGD step
(momentum 0.9, wd 5e-4, lr 0.05, encoder and predictor in two parameter groups as --fix-pred-lr).
One item is one image (both views). Cases:
  convnet28       simsiam::ConvNet 8-16-32-64 (the quick start), d 512, pred 128,
                  2-layer projector, [256, 1, 28, 28]
  resnet18_cifar  torchvision resnet18, CIFAR stem (3x3/1 conv1, no max-pool), d 2048, pred 512,
                  2-layer projector (the paper's CIFAR variant), [64, 3, 32, 32]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def convnet(in_channels=1, widths=(8, 16, 32, 64)):
    """simsiam::ConvNet: stages of conv3x3/2 (no bias) BN ReLU, global average pooling."""
    layers, prev = [], in_channels
    for width in widths:
        layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        prev = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    return nn.Sequential(*layers), prev


def resnet18_cifar():
    """torchvision resnet18 as the official encoder (zero_init_residual=True), CIFAR stem."""
    net = torchvision.models.resnet18(zero_init_residual=True)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    prev_dim = net.fc.weight.shape[1]
    net.fc = nn.Identity()
    return net, prev_dim


class SimSiam(nn.Module):
    """builder.py's SimSiam with the 2-layer projector (simsiam::Projector, num_layers 2):
    Linear(prev, prev, bias=False) BN ReLU, Linear(prev, dim) BN(affine=False), the last bias
    frozen; predictor Linear(dim, pred_dim, bias=False) BN ReLU Linear(pred_dim, dim)."""

    def __init__(self, backbone, prev_dim, dim, pred_dim):
        super().__init__()
        fc = nn.Linear(prev_dim, dim)
        projector = nn.Sequential(nn.Linear(prev_dim, prev_dim, bias=False),
                                  nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
                                  fc, nn.BatchNorm1d(dim, affine=False))
        fc.bias.requires_grad = False  # hack: not use bias as it is followed by BN
        self.encoder = nn.Sequential(backbone, projector)
        self.predictor = nn.Sequential(nn.Linear(dim, pred_dim, bias=False),
                                       nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
                                       nn.Linear(pred_dim, dim))

    def forward(self, x1, x2):
        z1 = self.encoder(x1)
        z2 = self.encoder(x2)
        p1 = self.predictor(z1)
        p2 = self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()


def build(case):
    if case == "convnet28":
        backbone, prev_dim = convnet(1)
        return SimSiam(backbone, prev_dim, dim=512, pred_dim=128), (256, 1, 28, 28)
    if case == "resnet18_cifar":
        backbone, prev_dim = resnet18_cifar()
        return SimSiam(backbone, prev_dim, dim=2048, pred_dim=512), (64, 3, 32, 32)
    raise ValueError(case)


def measure(step, batch, min_time, repetitions, warmup=2, min_steps=2):
    """Median images/s over `repetitions` runs of at least `min_time` seconds and `min_steps`
    steps each, after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repetitions):
        n, start = 0, time.perf_counter()
        while n < min_steps or time.perf_counter() - start < min_time:
            step()
            n += 1
        rates.append(n * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", default=["convnet28", "resnet18_cifar"],
                        choices=["convnet28", "resnet18_cifar"])
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=1)
    args = parser.parse_args()

    criterion = nn.CosineSimilarity(dim=1)
    for case in args.cases:
        for threads in args.threads:
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model, shape = build(case)
            model.train()
            total = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            optim_params = [{"params": model.encoder.parameters(), "fix_lr": False},
                            {"params": model.predictor.parameters(), "fix_lr": True}]
            optimizer = torch.optim.SGD(optim_params, 0.05, momentum=0.9, weight_decay=5e-4)
            x1, x2 = torch.randn(shape), torch.randn(shape)

            def step():
                p1, p2, z1, z2 = model(x1, x2)
                loss = -(criterion(p1, z2).mean() + criterion(p2, z1).mean()) * 0.5
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            rate = measure(step, shape[0], args.min_time, args.repetitions)
            print("train step %-14s threads=%d: %10.1f images/s  (%d parameters, %d trainable)"
                  % (case, threads, rate, total, trainable), flush=True)


if __name__ == "__main__":
    main()
