// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Keeps glibc from handing freed tensor memory back to the OS on every step.
///
/// LibTorch's CPU allocator takes memory from malloc. glibc serves large blocks with mmap and
/// trims the heap when its top grows free, so a training step that allocates and frees the same
/// multi-megabyte activations each iteration pays page faults (zero-filling fresh pages) for all
/// of them, again and again. Measured on the loss at batch 256 x 2048: 10x slower without this
/// (docs/performance.md). Raising both thresholds keeps that memory in the process for reuse.
#pragma once

#include <cstddef>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace simsiam {

/// Older glibc refuses M_MMAP_THRESHOLD above DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit).
inline constexpr int kMaxMmapThreshold = 4 * 1024 * 1024 * static_cast<int>(sizeof(long));

/// Serves blocks up to `keep_bytes` (default 1 GiB; 32 MiB where glibc allows no more) from the
/// heap and keeps up to `keep_bytes` of freed memory in the process, by setting glibc's
/// M_MMAP_THRESHOLD and M_TRIM_THRESHOLD. A 224x224 batch of 64 images is 38 MiB, above glibc's
/// default ceiling, so without this every such tensor is a fresh mmap: 50x slower element-wise
/// operations measured here (docs/performance.md). Returns false where the C library is not
/// glibc (nothing done), or `keep_bytes` is under 32 MiB, or glibc refuses the values.
/// Process-wide: call it once at program start; the library never calls it behind a user's back.
inline bool keep_freed_memory(int keep_bytes = 1 << 30) {
#if defined(__GLIBC__)
  if (keep_bytes < kMaxMmapThreshold) return false;
  const bool heap = mallopt(M_MMAP_THRESHOLD, keep_bytes) == 1 ||
                    mallopt(M_MMAP_THRESHOLD, kMaxMmapThreshold) == 1;
  return heap && mallopt(M_TRIM_THRESHOLD, keep_bytes) == 1;
#else
  (void)keep_bytes;
  return false;
#endif
}

}  // namespace simsiam
