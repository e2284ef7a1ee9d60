// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief A multi-threaded loader of two-view batches: seeded order, per-epoch reshuffle,
/// drop-last, sharding as PyTorch's DistributedSampler, bounded prefetch, bad images skipped.
///
/// Worker threads build whole batches (decode, crop, augment), each batch with its own
/// generator seeded from (seed, epoch, batch index, rank), and `next()` hands them out in order:
/// a seed gives the same batches whatever the number of workers, and each rank of a
/// data-parallel run draws its own augmentations.
///
/// The loader needs no codec: the sources are in their own headers, `tensor_source.hpp`
/// (in-memory images) and `folder_source.hpp` (an image folder; target `SimSiam::data`).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "simsiam/data/batch.hpp"
#include "simsiam/data/sampler.hpp"
#include "simsiam/detail/seed.hpp"

namespace simsiam {

/// Options of `Loader`.
struct LoaderOptions {
  /// Images per batch, on this process.
  TORCH_ARG(int64_t, batch_size) = 256;
  /// Threads building batches; 0 builds them in `next()` on the calling thread.
  TORCH_ARG(int64_t, workers) = 2;
  /// Batches built ahead of the consumer, at most.
  TORCH_ARG(int64_t, prefetch) = 4;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, shuffle) = true;
  /// Drop the last incomplete batch (SimSiam's recipe).
  TORCH_ARG(bool, drop_last) = true;
  /// This process's shard of each epoch (DistributedSampler's rank and num_replicas).
  TORCH_ARG(int64_t, rank) = 0;
  TORCH_ARG(int64_t, world_size) = 1;
  /// The training device. With a CUDA device (and `pin_memory`), batches are put in pinned
  /// (page-locked) host memory, so that their copies to the device do not block, by threads
  /// whose current device is this one: no rank of a multi-GPU run opens a context on GPU 0.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Pin batches when `device` is a CUDA device (as DataLoader's pin_memory and
  /// pin_memory_device); never for a CPU device.
  TORCH_ARG(bool, pin_memory) = true;
  /// More skipped images than this in one epoch is an error; -1 never fails.
  TORCH_ARG(int64_t, max_bad_images) = 100;
  /// Where skipped images are reported (default: one line on std::cerr each).
  TORCH_ARG(std::function<void(const BadImage&)>, on_bad_image) = nullptr;

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    constexpr const char* kWhere = "simsiam::Loader";
    TORCH_CHECK(batch_size() > 0, kWhere, ": expected batch_size > 0, got ", batch_size());
    TORCH_CHECK(workers() >= 0 && prefetch() > 0, kWhere,
                ": expected workers >= 0 and prefetch > 0, got ", workers(), " and ", prefetch());
    TORCH_CHECK(world_size() > 0 && rank() >= 0 && rank() < world_size(), kWhere,
                ": expected 0 <= rank < world_size, got rank ", rank(), " and world_size ",
                world_size());
    TORCH_CHECK(device().is_cpu() || device().is_cuda(), kWhere,
                ": expected a CPU or CUDA device, got ", device());
    if (device().is_cuda()) {
      const auto count = static_cast<int64_t>(torch::cuda::device_count());
      TORCH_CHECK(std::max<int64_t>(device().index(), 0) < count, kWhere, ": expected one of the ",
                  count, " CUDA devices this LibTorch sees, got ", device(),
                  count == 0 ? " (a CPU-only LibTorch, or no GPU: use torch::kCPU)" : "");
    }
  }
};

/// Counters of the current epoch.
struct LoaderStats {
  int64_t batches = 0, images = 0, bad_images = 0;
  double seconds = 0.0;       ///< since the epoch started
  double wait_seconds = 0.0;  ///< spent inside next() waiting for a batch
  double images_per_second() const { return seconds > 0 ? images / seconds : 0.0; }
  /// The fraction of the time the consumer waited for data: near 0, the input keeps up.
  double wait_fraction() const { return seconds > 0 ? wait_seconds / seconds : 0.0; }
};

/// Hands out the batches of one epoch at a time, built by worker threads. `Source` is
/// `TensorSource`, `FolderSource` or any type with `size()` and
/// `TwoViewBatch operator()(indices, generator, bad_images) const`.
template <class Source>
class Loader {
 public:
  Loader(Source source, LoaderOptions options)
      : source_(std::move(source)), options_((options.check(), std::move(options))) {
    TORCH_CHECK(source_.size() > 0, "simsiam::Loader: the dataset is empty");
    set_epoch(0);
  }

  ~Loader() { stop(); }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts epoch `epoch`: this rank's shard of the epoch's permutation, cut into batches.
  void set_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    const auto indices = shard_indices(source_.size(), options_.rank(), options_.world_size(),
                                       options_.seed(), epoch, options_.shuffle());
    batches_.clear();
    const auto n = static_cast<int64_t>(indices.size()), b = options_.batch_size();
    const int64_t count = options_.drop_last() ? n / b : (n + b - 1) / b;
    for (int64_t i = 0; i < count; ++i) {
      batches_.emplace_back(indices.begin() + i * b, indices.begin() + std::min(n, (i + 1) * b));
    }
    next_batch_ = 0;
    handed_out_ = 0;
    ready_.clear();
    failure_ = nullptr;
    stats_ = {};
    stopping_ = false;
    started_ = std::chrono::steady_clock::now();
    for (int64_t w = 0; w < options_.workers(); ++w) threads_.emplace_back([this] { work(); });
  }

  int64_t epoch() const { return epoch_; }
  int64_t batches_per_epoch() const { return static_cast<int64_t>(batches_.size()); }

  /// The next batch of the epoch, or nothing at its end. Rethrows a worker's failure (e.g. more
  /// bad images than `max_bad_images`).
  std::optional<TwoViewBatch> next() {
    const auto wait_start = std::chrono::steady_clock::now();
    std::optional<TwoViewBatch> out;
    while (handed_out_ < batches_per_epoch() && !out) {
      TwoViewBatch batch;
      if (options_.workers() == 0) {
        batch = build(handed_out_);
        std::lock_guard<std::mutex> lock(mutex_);
        ++handed_out_;
      } else {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return failure_ || ready_.count(handed_out_) > 0; });
        if (failure_) std::rethrow_exception(failure_);
        batch = std::move(ready_[handed_out_]);
        ready_.erase(handed_out_);
        ++handed_out_;
      }
      changed_.notify_all();
      if (batch.view1.defined()) out = std::move(batch);  // a batch of only bad images is skipped
    }
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.wait_seconds += std::chrono::duration<double>(now - wait_start).count();
    stats_.seconds = std::chrono::duration<double>(now - started_).count();
    if (out) {
      ++stats_.batches;
      stats_.images += out->view1.size(0);
    }
    return out;
  }

  LoaderStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  /// Builds batch `b` with its own generator; reports and counts bad images.
  TwoViewBatch build(int64_t b) {
    auto generator = at::detail::createCPUGenerator(
        detail::mix_seed(options_.seed() ^ (static_cast<uint64_t>(epoch_) << 32),
                         static_cast<uint64_t>(b * options_.world_size() + options_.rank())));
    std::vector<BadImage> bad;
    auto batch = source_(batches_[static_cast<size_t>(b)], generator, bad);
    if (!bad.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& image : bad) {
        if (options_.on_bad_image()) {
          options_.on_bad_image()(image);
        } else {
          std::cerr << "simsiam::Loader: skipped " << image.name << ": " << image.reason << "\n";
        }
      }
      stats_.bad_images += static_cast<int64_t>(bad.size());
      TORCH_CHECK(options_.max_bad_images() < 0 || stats_.bad_images <= options_.max_bad_images(),
                  "simsiam::Loader: ", stats_.bad_images, " images failed to load in epoch ",
                  epoch_, ", more than max_bad_images = ", options_.max_bad_images(),
                  " (last: ", bad.back().name, ": ", bad.back().reason, ")");
    }
    if (batch.view1.defined() && options_.pin_memory() && options_.device().is_cuda()) {
      const c10::DeviceGuard on_device(options_.device());  // pinned for this GPU's context
      batch.view1 = batch.view1.pin_memory();
      if (batch.view2.defined()) batch.view2 = batch.view2.pin_memory();  // one-view sources
    }
    return batch;
  }

  void work() {
#if defined(_OPENMP)
    omp_set_num_threads(1);  // parallelism comes from the workers; no nested thread teams
#endif
    while (true) {
      int64_t b = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] {
          return stopping_ || failure_ || next_batch_ >= batches_per_epoch() ||
                 next_batch_ < handed_out_ + options_.prefetch();
        });
        if (stopping_ || failure_ || next_batch_ >= batches_per_epoch()) return;
        b = next_batch_++;
      }
      try {
        auto batch = build(b);
        std::lock_guard<std::mutex> lock(mutex_);
        ready_[b] = std::move(batch);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!failure_) failure_ = std::current_exception();
      }
      changed_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

  Source source_;
  const LoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<std::vector<int64_t>> batches_;
  int64_t next_batch_ = 0, handed_out_ = 0;
  std::map<int64_t, TwoViewBatch> ready_;
  std::exception_ptr failure_;
  bool stopping_ = false;
  LoaderStats stats_;
  std::chrono::steady_clock::time_point started_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
};

}  // namespace simsiam
