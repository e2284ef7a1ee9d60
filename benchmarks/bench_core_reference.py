#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The PyTorch reference for benchmarks/bench_core.cpp: the official loss and heads
(facebookresearch/simsiam builder.py, main_simsiam.py) at batch 256, d 2048, forward + backward,
images/s with 1 and 2 threads. Run with Debian's python3-torch on the same machine:

    /usr/bin/python3 benchmarks/bench_core_reference.py
"""
import statistics
import time

import torch
import torch.nn as nn

BATCH, DIM = 256, 2048


def heads():
    fc = nn.Linear(DIM, DIM)
    projector = nn.Sequential(nn.Linear(DIM, DIM, bias=False), nn.BatchNorm1d(DIM), nn.ReLU(True),
                              nn.Linear(DIM, DIM, bias=False), nn.BatchNorm1d(DIM), nn.ReLU(True),
                              fc, nn.BatchNorm1d(DIM, affine=False))
    fc.bias.requires_grad = False
    predictor = nn.Sequential(nn.Linear(DIM, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(True),
                              nn.Linear(512, DIM))
    return projector, predictor


criterion = nn.CosineSimilarity(dim=1)


def loss_fn(p1, p2, z1, z2):
    return -(criterion(p1, z2.detach()).mean() + criterion(p2, z1.detach()).mean()) * 0.5


def measure(step, min_time=1.0, repetitions=5):
    """Median images/s over `repetitions` runs of at least `min_time` seconds each, as
    Google Benchmark's --benchmark_repetitions=5 median."""
    step()
    rates = []
    for _ in range(repetitions):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_time:
            step()
            n += 1
        rates.append(n * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    torch.manual_seed(0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        p1 = torch.randn(BATCH, DIM, requires_grad=True)
        p2 = torch.randn(BATCH, DIM, requires_grad=True)
        z1, z2 = torch.randn(BATCH, DIM), torch.randn(BATCH, DIM)

        def loss_step():
            loss_fn(p1, p2, z1, z2).backward()
            p1.grad = p2.grad = None

        projector, predictor = heads()
        f1, f2 = torch.randn(BATCH, DIM), torch.randn(BATCH, DIM)

        def heads_step():
            za, zb = projector(f1), projector(f2)
            loss_fn(predictor(za), predictor(zb), za, zb).backward()
            for p in list(projector.parameters()) + list(predictor.parameters()):
                p.grad = None

        print("loss  fwd+bwd threads=%d: %10.0f images/s" % (threads, measure(loss_step)))
        print("heads fwd+bwd threads=%d: %10.0f images/s" % (threads, measure(heads_step)))


if __name__ == "__main__":
    main()
