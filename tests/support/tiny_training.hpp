// SPDX-License-Identifier: BSD-3-Clause
// A tiny SimSiam set-up for trainer tests: a 2-stage ConvNet on random 12x12 images, a loader
// without workers, and a scratch folder removed at the end of the test.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "simsiam/augment/presets.hpp"
#include "simsiam/backbones/convnet.hpp"
#include "simsiam/data/loader.hpp"
#include "simsiam/data/tensor_source.hpp"
#include "simsiam/model/simsiam.hpp"
#include "simsiam/optim/recipe.hpp"
#include "simsiam/train/trainer.hpp"

namespace simsiam::testing {

using TinyPipeline = decltype(augment::simsiam_grayscale(12));
using TinySource = TensorSource<TinyPipeline>;
using TinyModel = SimSiam<ConvNet>;

/// 48 random grey 12x12 images in 4 classes.
inline LabeledImages tiny_data() {
  auto generator = at::detail::createCPUGenerator(7);
  return {torch::randint(0, 256, {48, 1, 12, 12}, generator, torch::kUInt8),
          torch::arange(48, torch::kLong).remainder(4)};
}

/// The same initial weights for the same seed.
inline TinyModel tiny_model(uint64_t seed = 0, int64_t dim = 16) {
  torch::manual_seed(seed);
  ConvNet backbone(ConvNetOptions(1).widths({4, 8}));
  return TinyModel(backbone, SimSiamOptions().dim(dim).pred_dim(4).projector_layers(2));
}

/// Batches of 16 (3 per epoch), built on the calling thread, seed 1.
inline Loader<TinySource> tiny_loader() {
  LoaderOptions options;
  options.batch_size(16);
  options.workers(0);
  options.seed(1);
  options.pin_memory(false);
  return Loader<TinySource>(TinySource{tiny_data(), augment::simsiam_grayscale(12)}, options);
}

/// Trainer options that keep the console quiet; every step logged, with its collapse std.
inline TrainerOptions quiet_options(int64_t epochs, const std::string& run_dir) {
  static std::FILE* null_stream = std::fopen("/dev/null", "w");
  return TrainerOptions()
      .epochs(epochs)
      .run_dir(run_dir)
      .progress(ProgressBarOptions().plain(true).stream(null_stream))
      .metrics(MetricsLogOptions().every(1))
      .collapse(CollapseMonitorOptions().every(1));
}

/// A fresh folder under the system's temporary directory, removed with the object.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("simsiam_" + name + "_" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "_" +
             std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// Stops the run at the end of epoch `epoch` (from 0).
struct StopAfterEpoch : Hook {
  explicit StopAfterEpoch(int64_t epoch) : epoch(epoch) {}
  void on_epoch_end(TrainState& state) override {
    if (state.epoch == epoch) {
      state.stop = true;
      state.stop_reason = "test stop";
    }
  }
  int64_t epoch;
};

/// Whether all parameters and buffers of two modules are bit-identical.
inline bool identical(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  for (const auto& item : ba) {
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  }
  return true;
}

}  // namespace simsiam::testing
