#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The PyTorch reference for benchmarks/bench_distributed.cpp: torch.distributed over Gloo on
127.0.0.1 with two processes (torch.multiprocessing), on the same machine:

    /usr/bin/python3 benchmarks/bench_distributed_reference.py
    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
      /usr/bin/python3 benchmarks/bench_distributed_reference.py   # the C++ malloc settings

Cases (1 thread per process, fixed iteration counts, a barrier before and after each loop):
  all_reduce KiB:n      dist.all_reduce of n KiB of float32 (0: one float)
  quick start step      the official step of the quick start's network (bench_train_reference's
                        convnet28) under DistributedDataParallel, batch 256 per process, with
                        per-process BatchNorm: PyTorch's SyncBatchNorm needs CUDA tensors in 1.13,
                        so this is the configuration both can run on CPU.
"""
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import bench_train_reference as reference

PORT = int(os.environ.get("SIMSIAM_BENCH_PORT", "29741"))


def timed(fn, iterations):
    fn()  # warm-up
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    seconds = (time.perf_counter() - start) / iterations
    dist.barrier()
    return seconds


def run(rank):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{PORT}", rank=rank,
                            world_size=2)
    report = print if rank == 0 else (lambda *args: None)
    for kib in (0, 1024, 25600):
        buffer = torch.ones(max(1, kib * 1024 // 4))
        seconds = timed(lambda: dist.all_reduce(buffer), 40)
        report(f"all_reduce KiB:{kib:<6} {seconds * 1e3:8.3f} ms  "
               f"{buffer.numel() * 4 / seconds / 1e6:9.1f} MB/s")

    torch.manual_seed(0)
    model, shape = reference.build("convnet28")
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD([{"params": model.encoder.parameters()},
                                 {"params": model.predictor.parameters()}],
                                lr=0.05, momentum=0.9, weight_decay=5e-4)
    torch.manual_seed(rank)
    x1, x2 = torch.randn(shape), torch.randn(shape)

    def step():
        p1, p2, z1, z2 = ddp(x1, x2)
        loss = -(F.cosine_similarity(p1, z2, dim=-1).mean() +
                 F.cosine_similarity(p2, z1, dim=-1).mean()) * 0.5
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = timed(step, 60)
    report(f"quick start step, 2 processes x batch {shape[0]}, per-process BN: "
           f"{seconds * 1e3:.1f} ms  {2 * shape[0] / seconds:.0f} images/s")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, nprocs=2)
