// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief A multi-threaded loader of two-view batches: seeded order, per-epoch reshuffle,
/// drop-last, sharding as PyTorch's DistributedSampler, bounded prefetch, bad images skipped.
///
/// Worker threads build whole batches (decode, crop, augment), each batch with its own
/// generator seeded from (seed, epoch, batch index, rank), and `next()` hands them out in order:
/// a seed gives the same batches whatever the number of workers, and each rank of a
/// data-parallel run draws its own augmentations.
#pragma once

#include <torch/torch.h>

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

#include "simsiam/augment/transforms.hpp"
#include "simsiam/data/idx.hpp"
#include "simsiam/data/image_folder.hpp"

namespace simsiam {

/// PyTorch's DistributedSampler: the indices one rank sees in an epoch. With `shuffle`, a
/// permutation of [0, n) from a generator seeded with seed + epoch (torch.randperm, the same
/// permutation as Python for the same seed); without, 0..n-1. Without `drop_tail` the list is
/// padded by repeating its start to a multiple of `world_size`; with it, the remainder is
/// dropped. Rank r takes every world_size-th index from r.
inline std::vector<int64_t> shard_indices(int64_t n, int64_t rank, int64_t world_size,
                                          uint64_t seed, int64_t epoch, bool shuffle = true,
                                          bool drop_tail = false) {
  TORCH_CHECK(world_size > 0 && rank >= 0 && rank < world_size,
              "simsiam::shard_indices: expected 0 <= rank < world_size, got rank ", rank,
              " and world_size ", world_size);
  TORCH_CHECK(n > 0, "simsiam::shard_indices: expected a non-empty dataset");
  std::vector<int64_t> order(static_cast<size_t>(n));
  if (shuffle) {
    auto generator = at::detail::createCPUGenerator(seed + static_cast<uint64_t>(epoch));
    const auto perm = torch::randperm(n, generator, torch::kLong);
    std::copy(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + n, order.begin());
  } else {
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  }
  const int64_t per_rank = drop_tail ? n / world_size : (n + world_size - 1) / world_size;
  const int64_t total = per_rank * world_size;
  for (int64_t i = n; i < total; ++i) order.push_back(order[static_cast<size_t>(i - n)]);
  order.resize(static_cast<size_t>(total));
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank));
  for (int64_t i = rank; i < total; i += world_size) mine.push_back(order[static_cast<size_t>(i)]);
  return mine;
}

/// One batch of two views: float [B, C, S, S] each, labels and dataset indices [B] (int64).
struct TwoViewBatch {
  torch::Tensor view1, view2, labels, indices;
};

/// Images that failed to load while building a batch (skipped, never replaced by zeros).
struct BadImage {
  std::string name, reason;
};

struct LoaderOptions {
  int64_t batch_size = 256;
  /// Threads building batches; 0 builds them in `next()` on the calling thread.
  int64_t workers = 2;
  /// Batches built ahead of the consumer, at most.
  int64_t prefetch = 4;
  uint64_t seed = 0;
  bool shuffle = true;
  /// Drop the last incomplete batch (SimSiam's recipe).
  bool drop_last = true;
  /// This process's shard of each epoch (DistributedSampler's rank and num_replicas).
  int64_t rank = 0, world_size = 1;
  /// Copy batches to pinned memory when CUDA is available (for non-blocking copies).
  bool pin_memory = true;
  /// More skipped images than this in one epoch is an error; -1 never fails.
  int64_t max_bad_images = 100;
  /// Where skipped images are reported (default: one line on std::cerr each).
  std::function<void(const BadImage&)> on_bad_image;
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

/// Builds two-view batches from in-memory uint8 images [N, C, H, W] (CIFAR, MNIST) with an
/// augmentation pipeline (e.g. `augment::simsiam_cifar()`).
template <class Pipeline>
struct TensorSource {
  LabeledImages data;
  Pipeline pipeline;

  int64_t size() const { return data.images.size(0); }

  TwoViewBatch operator()(const std::vector<int64_t>& indices, torch::Generator& generator,
                          std::vector<BadImage>& /*bad*/) const {
    const auto index = torch::tensor(indices, torch::kLong);
    const auto images = data.images.index_select(0, index);
    auto first = pipeline(images, generator);  // the worker's thread: no chunking needed
    auto second = pipeline(images, generator);
    return {std::move(first), std::move(second), data.labels.index_select(0, index), index};
  }
};

/// Builds two-view batches from an `ImageFolder`: each file decoded (at a reduced DCT scale when
/// its two crops allow, see `DecodedViews`), cropped twice, then `post` (the rest of the recipe,
/// e.g. jitter, grayscale, blur, flip, normalise) applied to each view batch. Files that fail to
/// read or decode are reported and left out of the batch.
template <class Post>
struct FolderSource {
  ImageFolder folder;
  DecodedViews crop;
  Post post;

  int64_t size() const { return folder.size(); }

  TwoViewBatch operator()(const std::vector<int64_t>& indices, torch::Generator& generator,
                          std::vector<BadImage>& bad) const {
    std::vector<torch::Tensor> first, second;
    std::vector<int64_t> kept, labels;
    for (const int64_t i : indices) {
      const auto name = "'" + folder.path(i) + "'";
      try {
        auto [a, b] = crop(folder.read(i), name, generator);
        first.push_back(std::move(a));
        second.push_back(std::move(b));
        kept.push_back(i);
        labels.push_back(folder.label(i));
      } catch (const c10::Error& error) {
        bad.push_back({folder.path(i), error.what_without_backtrace()});
      }
    }
    if (kept.empty()) return {};
    auto view1 = post(torch::stack(first), generator);
    auto view2 = post(torch::stack(second), generator);
    return {std::move(view1), std::move(view2), torch::tensor(labels, torch::kLong),
            torch::tensor(kept, torch::kLong)};
  }
};

/// The crop of a preset (its first functor) and the rest, for `FolderSource`.
template <class First, class... Rest>
std::pair<First, augment::Compose<Rest...>> split_crop(const augment::Compose<First, Rest...>& p) {
  return std::apply(
      [](const First& first, const Rest&... rest) {
        return std::make_pair(first, augment::Compose<Rest...>(rest...));
      },
      p.transforms);
}

/// Hands out the batches of one epoch at a time, built by worker threads. `Source` is
/// `TensorSource`, `FolderSource` or any type with `size()` and
/// `TwoViewBatch operator()(indices, generator, bad_images) const`.
template <class Source>
class Loader {
 public:
  Loader(Source source, LoaderOptions options)
      : source_(std::move(source)), options_(std::move(options)) {
    constexpr const char* kWhere = "simsiam::Loader";
    TORCH_CHECK(options_.batch_size > 0, kWhere, ": expected batch_size > 0, got ",
                options_.batch_size);
    TORCH_CHECK(options_.workers >= 0 && options_.prefetch > 0, kWhere,
                ": expected workers >= 0 and prefetch > 0, got ", options_.workers, " and ",
                options_.prefetch);
    TORCH_CHECK(source_.size() > 0, kWhere, ": the dataset is empty");
    set_epoch(0);
  }

  ~Loader() { stop(); }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts epoch `epoch`: this rank's shard of the epoch's permutation, cut into batches.
  void set_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    const auto indices = shard_indices(source_.size(), options_.rank, options_.world_size,
                                       options_.seed, epoch, options_.shuffle);
    batches_.clear();
    const auto n = static_cast<int64_t>(indices.size()), b = options_.batch_size;
    const int64_t count = options_.drop_last ? n / b : (n + b - 1) / b;
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
    for (int64_t w = 0; w < options_.workers; ++w) threads_.emplace_back([this] { work(); });
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
      if (options_.workers == 0) {
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
        augment::detail::mix_seed(options_.seed ^ (static_cast<uint64_t>(epoch_) << 32),
                                  static_cast<uint64_t>(b * options_.world_size + options_.rank)));
    std::vector<BadImage> bad;
    auto batch = source_(batches_[static_cast<size_t>(b)], generator, bad);
    if (!bad.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& image : bad) {
        if (options_.on_bad_image) {
          options_.on_bad_image(image);
        } else {
          std::cerr << "simsiam::Loader: skipped " << image.name << ": " << image.reason << "\n";
        }
      }
      stats_.bad_images += static_cast<int64_t>(bad.size());
      TORCH_CHECK(options_.max_bad_images < 0 || stats_.bad_images <= options_.max_bad_images,
                  "simsiam::Loader: ", stats_.bad_images, " images failed to load in epoch ",
                  epoch_, ", more than max_bad_images = ", options_.max_bad_images,
                  " (last: ", bad.back().name, ": ", bad.back().reason, ")");
    }
    if (batch.view1.defined() && options_.pin_memory && torch::cuda::is_available()) {
      batch.view1 = batch.view1.pin_memory();
      batch.view2 = batch.view2.pin_memory();
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
                 next_batch_ < handed_out_ + options_.prefetch;
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
  LoaderOptions options_;
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
