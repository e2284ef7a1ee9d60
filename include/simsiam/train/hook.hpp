// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Hook`: code the `Trainer` calls at run, epoch and step boundaries, and `TrainState`,
/// what it sees there.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "simsiam/distributed/communicator.hpp"
#include "simsiam/eval/features.hpp"

namespace simsiam {

/// The trainer's state as hooks see it. Hooks read it, add metrics, or ask to stop.
struct TrainState {
  int64_t epoch = 0;            ///< the current epoch, from 0
  int64_t epochs = 0;           ///< epochs of the whole run
  int64_t start_epoch = 0;      ///< 0, or the epoch a resumed run started at
  int64_t step_in_epoch = 0;    ///< steps done in the current epoch
  int64_t steps_per_epoch = 0;  ///< as the loader reports it
  int64_t global_step = 0;      ///< optimiser steps done in the whole run

  /// The loss of step `loss_step`, the latest the trainer read from the device (every
  /// `TrainerOptions::read_every` steps and at each epoch's end); this rank's own.
  double loss = 0.0;
  int64_t loss_step = 0;
  int64_t batch_size = 0;   ///< images in the last batch, over all ranks
  torch::Tensor z1, z2;     ///< the last step's (detached) projections
  std::vector<double> lrs;  ///< lr of each parameter group
  /// Mean loss of the epoch's steps read so far; at the epoch's end, the mean over the ranks.
  double epoch_loss = 0.0;
  double images_per_second = 0.0;   ///< this epoch so far, over all ranks
  double data_wait_fraction = 0.0;  ///< of this epoch's time spent waiting for the loader
  double seconds = 0.0;             ///< since the run (or the resumed part) started

  /// Metrics of the last step / the epoch, added by hooks (e.g. `metrics::kCollapseStd`)
  /// and written by `MetricsLog`. Step metrics are cleared before each step.
  std::map<std::string, double> step_metrics, epoch_metrics;

  /// Set by a hook to end the run after the current step, with the reason.
  bool stop = false;
  std::string stop_reason;

  std::string run_dir;  ///< where files go; empty: nowhere
  torch::Device device = torch::kCPU;
  /// The model, for `eval()`/`train()`, and its feature function (backbone output).
  torch::nn::Module* model = nullptr;
  FeatureFunction features;
  /// The ranks of a data-parallel run, or null for one process. Hooks on every rank are called
  /// at the same points, so a hook may run collectives (`KnnMonitor` does).
  distributed::Communicator* communicator = nullptr;
};

/// Names of the metrics that the built-in hooks write and read.
namespace metrics {
/// `CollapseMonitor`: std of the l2-normalised projections (paper Figure 2, middle).
inline constexpr const char* kCollapseStd = "collapse_std";
/// `KnnMonitor`: kNN top-1 accuracy on held-out images, in [0, 1].
inline constexpr const char* kKnnTop1 = "knn_top1";
}  // namespace metrics

/// Called by `Trainer::fit` in this order: `on_train_begin`, then per epoch `on_epoch_begin`,
/// `on_step_end` after each optimiser step, `on_epoch_end`; finally `on_train_end`, also when
/// the run stops early or fails. Hooks run in the order they were added.
class Hook {
 public:
  virtual ~Hook() = default;
  virtual void on_train_begin(TrainState& /*state*/) {}
  virtual void on_epoch_begin(TrainState& /*state*/) {}
  virtual void on_step_end(TrainState& /*state*/) {}
  virtual void on_epoch_end(TrainState& /*state*/) {}
  virtual void on_train_end(TrainState& /*state*/) {}
};

}  // namespace simsiam
