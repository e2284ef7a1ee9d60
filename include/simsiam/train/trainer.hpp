// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Trainer`: the SimSiam training loop over any model, loader, optimiser, schedule and
/// loss, with hooks, checkpoints, exact resume, a non-finite loss guard and mixed precision.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "simsiam/detail/file.hpp"
#include "simsiam/detail/seed.hpp"
#include "simsiam/distributed/communicator.hpp"
#include "simsiam/distributed/replicas.hpp"
#include "simsiam/loss/symmetric_loss.hpp"
#include "simsiam/optim/schedule.hpp"
#include "simsiam/train/amp.hpp"
#include "simsiam/train/checkpoint.hpp"
#include "simsiam/train/hook.hpp"
#include "simsiam/train/logging.hpp"
#include "simsiam/train/monitors.hpp"
#include "simsiam/train/snapshot.hpp"

namespace simsiam {

/// A non-owning pointer to the ranks of a run (an alias, as TORCH_ARG needs one type token).
using CommunicatorPtr = distributed::Communicator*;
/// Augmentations applied to each view on the training device: f(views, generator).
using ViewTransform = std::function<torch::Tensor(const torch::Tensor&, torch::Generator&)>;

/// Options of `Trainer`.
struct TrainerOptions {
  /// Epochs of the whole run (a resumed run continues up to this).
  TORCH_ARG(int64_t, epochs) = 100;
  /// Folder for checkpoints, metrics and the plot (created); empty writes nothing.
  TORCH_ARG(std::string, run_dir) = "";
  /// Write `checkpoint.pt` after every `checkpoint_every` epochs and after the last.
  TORCH_ARG(int64_t, checkpoint_every) = 1;
  /// Also keep each one as `checkpoint_0003.pt`, named after the 0-based epoch just trained as
  /// main_simsiam.py names its files (`checkpoint_0099` after 100 epochs).
  TORCH_ARG(bool, keep_checkpoints) = false;
  /// A checkpoint to continue from; it must exist and match the model and `config`.
  TORCH_ARG(std::string, resume) = "";
  /// Step the schedule before every iteration instead of before every epoch.
  TORCH_ARG(bool, schedule_per_step) = false;
  /// Read the steps' losses from the device every `read_every` optimiser steps (global step a
  /// multiple of it) and at each epoch's end, all in one copy; the steps between wait for
  /// nothing. Unset: every step for one process on the CPU, where a read costs nothing, and
  /// every 50 steps otherwise. Read every step in one process, the loss is checked before
  /// backward; otherwise a step whose loss was not finite is found at the next read, and the
  /// weights, buffers and optimiser state go back to the last read that found all finite (the
  /// trainer keeps one copy of them on the device for that).
  TORCH_ARG(std::optional<int64_t>, read_every) = std::nullopt;
  /// Where the model trains; batches are copied there (non-blocking from pinned memory).
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Mixed precision: autocast in `amp_dtype` (default float16 on CUDA, bfloat16 on CPU), with
  /// dynamic loss scaling for float16.
  TORCH_ARG(bool, amp) = false;
  TORCH_ARG(std::optional<torch::ScalarType>, amp_dtype) = std::nullopt;
  /// Convert 4-D weights and the input batches to channels_last (faster convolutions on GPUs).
  TORCH_ARG(bool, channels_last) = false;
  /// On a CUDA device, let cuDNN time its convolution algorithms and keep the fastest during
  /// `fit` (`torch.backends.cudnn.benchmark = True`, as main_simsiam.py sets); the previous
  /// setting is restored afterwards. Off: results are reproducible run to run.
  TORCH_ARG(bool, cudnn_benchmark) = true;
  /// Augmentations run on the device after the copy, for loaders that only decode and crop on
  /// the CPU (a preset's colour jitter, blur, flip and normalisation on the GPU). Each step's
  /// CPU generator is seeded from (view_transform_seed, global step, rank): a resumed run draws
  /// the same parameters.
  TORCH_ARG(ViewTransform, view_transform) = nullptr;
  TORCH_ARG(uint64_t, view_transform_seed) = 0;
  /// The run's settings, recorded in checkpoints and compared on resume.
  TORCH_ARG(RunConfig, config) = {};
  /// Add the built-in hooks: a `CollapseMonitor` first; then, after the user's hooks, a
  /// `ProgressBar`, and with a `run_dir` a `MetricsLog` and a `MetricsPlot`.
  TORCH_ARG(bool, default_hooks) = true;
  TORCH_ARG(CollapseMonitorOptions, collapse) = {};
  TORCH_ARG(ProgressBarOptions, progress) = {};
  TORCH_ARG(MetricsLogOptions, metrics) = {};
  /// Data parallelism: the ranks of the run (e.g. a `distributed::ProcessGroup`), or null for
  /// one process. Each rank needs its own shard of the data (LoaderOptions::rank, world_size).
  TORCH_ARG(CommunicatorPtr, communicator) = nullptr;
  /// With several ranks: batch statistics of every `SyncBatchNorm` over all ranks (the paper's
  /// SyncBN; `convert_sync_batchnorm`).
  TORCH_ARG(bool, sync_batch_norm) = true;
  TORCH_ARG(distributed::DataParallelOptions, data_parallel) = {};

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    constexpr const char* kWhere = "simsiam::Trainer";
    TORCH_CHECK(epochs() > 0, kWhere, ": expected epochs > 0, got ", epochs());
    TORCH_CHECK(checkpoint_every() > 0, kWhere, ": expected checkpoint_every > 0, got ",
                checkpoint_every());
    TORCH_CHECK(read_every().value_or(1) > 0, kWhere, ": expected read_every > 0, got ",
                read_every().value_or(1));
    TORCH_CHECK(resume().empty() || std::filesystem::is_regular_file(resume()), kWhere,
                ": the checkpoint to resume from, '", resume(), "', does not exist");
    TORCH_CHECK(!amp() || device().is_cuda() || device().is_cpu(), kWhere,
                ": mixed precision needs a CPU or CUDA device, got ", device());
  }
  /// The autocast dtype: `amp_dtype`, or float16 on CUDA and bfloat16 elsewhere.
  torch::ScalarType resolved_amp_dtype() const {
    return amp_dtype().value_or(device().is_cuda() ? torch::kHalf : torch::kBFloat16);
  }
};

/// What `Trainer::fit` returns.
struct TrainResult {
  int64_t epochs_completed = 0;  ///< of the whole run, including epochs before a resume
  int64_t steps = 0;             ///< optimiser steps of the whole run
  bool stopped = false;          ///< a hook ended the run early
  std::string stop_reason;
  std::string checkpoint;                    ///< the last checkpoint written, or ""
  std::map<std::string, double> last_epoch;  ///< the last epoch's metrics (with "loss")
  double seconds = 0.0;                      ///< wall time of this call
};

namespace detail {

/// Sets cuDNN's benchmark mode for a scope and restores the previous setting (a process-wide
/// flag, read when a convolution is first planned).
class CudnnBenchmarkScope {
 public:
  explicit CudnnBenchmarkScope(bool enabled) : previous_(at::globalContext().benchmarkCuDNN()) {
    at::globalContext().setBenchmarkCuDNN(enabled);
  }
  ~CudnnBenchmarkScope() { at::globalContext().setBenchmarkCuDNN(previous_); }
  CudnnBenchmarkScope(const CudnnBenchmarkScope&) = delete;
  CudnnBenchmarkScope& operator=(const CudnnBenchmarkScope&) = delete;

 private:
  bool previous_;
};

template <class M, class = void>
struct has_features : std::false_type {};
template <class M>
struct has_features<
    M, std::void_t<decltype(std::declval<M&>()->features(std::declval<torch::Tensor>()))>>
    : std::true_type {};

}  // namespace detail

/// The SimSiam loop, as `train()` in main_simsiam.py: per epoch `loader.set_epoch(e)` and a
/// schedule step; then for each batch the two views go to the device, `model->forward(x1, x2)`
/// gives {p1, p2, z1, z2}, then `loss(p1, p2, z1, z2)`, zero_grad, backward, optimiser step and
/// the hooks.
///
/// A step waits for the device only where it must: the losses stay there and are read in one
/// copy every `read_every` steps and at each epoch's end (float16 loss scaling adds the
/// scaler's one read per step, as torch.amp's does). A loss that is not finite never reaches
/// the weights that the trainer leaves: read before backward when reading every step in one
/// process, otherwise found at the next read, which puts back the weights, buffers and
/// optimiser state of the last read that found every loss finite; either way the run stops
/// with an error naming the step.
///
/// - `Model`: a module holder whose forward takes two views and returns `SimSiamOutput`-like
///   {p1, p2, z1, z2} (`SimSiam<Backbone>` or your own); `features(x)`, when present, feeds
///   `KnnMonitor`.
/// - `Loader`: `simsiam::Loader<Source>` or any type with `set_epoch(e)`,
///   `batches_per_epoch()` and `next()` returning an optional batch with `view1`, `view2`.
/// - `Optimizer`: any `torch::optim::Optimizer` (SGD from `make_sgd`, `Lars`, Adam, ...).
/// - `Loss`: callable as `loss(p1, p2, z1, z2)` returning a scalar (default `SymmetricLoss`).
///
/// The options are checked once, at construction, and fixed from then on.
///
/// Checkpoints hold the weights, the optimiser state (momentum buffers), the position (epoch,
/// step, schedule steps), the RNG states, the gradient scaler and `options.config`; they are
/// written atomically. `resume` continues at the next epoch, and on CPU gives bit-identical
/// weights to a run that was never interrupted (same threads, same loader seed). A
/// `simsiam::Schedule` (`CosineSchedule`) is checked to span the run and recorded in the
/// checkpoint; any other LibTorch schedule is only stepped.
///
/// With `options.communicator` on N ranks (one process each, every rank calling `fit`): rank 0's
/// weights go to all ranks, BatchNorm is synchronised, gradients are averaged during backward,
/// and the ranks exchange one small message per step (who has a batch, who asks to stop, who
/// read a non-finite loss). A non-finite loss on any rank stops every rank with the same error,
/// a hook that stops the run on one rank stops it on all, and only rank 0 writes files
/// (checkpoints, metrics, plot, progress bar); every rank learns whether rank 0 could write the
/// checkpoint. A step's loss is the rank's own (main_simsiam.py logs rank 0's); the epoch's
/// loss is the mean over the ranks. Every rank must plan the same number of batches per epoch
/// (checked); a rank whose loader runs short ends the epoch on every rank.
template <class Model, class Loader, class Optimizer = torch::optim::SGD,
          class Loss = SymmetricLoss<>>
class Trainer {
  static_assert(std::is_base_of_v<torch::optim::Optimizer, Optimizer>,
                "simsiam::Trainer: Optimizer must derive from torch::optim::Optimizer");
  using Clock = std::chrono::steady_clock;
  using Hooks = std::vector<std::shared_ptr<Hook>>;
  using Batch = typename std::decay_t<decltype(std::declval<Loader&>().next())>::value_type;

 public:
  /// `loader`, `optimizer` and `schedule` (may be null) are used by reference and must outlive
  /// the trainer.
  Trainer(Model model, Loader& loader, Optimizer& optimizer, ScheduleRef schedule,
          TrainerOptions options, Loss loss = Loss())
      : options_((options.check(), std::move(options))),
        model_(std::move(model)),
        loader_(loader),
        optimizer_(optimizer),
        schedule_(schedule),
        loss_(std::move(loss)),
        replicas_(options_.communicator()),
        read_every_(options_.read_every().value_or(
            options_.device().is_cpu() && replicas_.size() == 1 ? 1 : 50)),
        // Reading before backward needs no copy of the weights; it is the only way for an
        // optimiser whose state the snapshot cannot copy.
        check_before_backward_((read_every_ == 1 && replicas_.size() == 1) ||
                               !detail::TrainingSnapshot::supports(optimizer)) {
    if (options_.default_hooks())
      collapse_ = std::make_shared<CollapseMonitor>(options_.collapse());
    scaler_.options.enabled(options_.amp() && options_.resolved_amp_dtype() == torch::kHalf);
  }

  /// Adds a hook, run after the hooks added before it (and after the built-in collapse monitor,
  /// before the built-in progress bar, metrics log and plot).
  void add_hook(std::shared_ptr<Hook> hook) { hooks_.push_back(std::move(hook)); }

  /// Trains from epoch 0, or from the checkpoint in `options.resume`, up to `options.epochs`.
  TrainResult fit() {
    const auto started = Clock::now();
    const detail::CudnnBenchmarkScope cudnn(
        at::globalContext().benchmarkCuDNN() ||
        (options_.cudnn_benchmark() && options_.device().is_cuda()));
    const auto hooks = all_hooks();
    TrainState state = initial_state();
    prepare_model();
    if (!options_.resume().empty()) resume(state);
    const auto attached =
        replicas_.attach(*model_, options_.sync_batch_norm(), options_.data_parallel());
    bad_.reset();  // from an earlier call that failed
    losses_ = detail::PendingLosses();
    // Rank 0's run folder decides for all: the others join its checkpoint agreement even when
    // they were given no folder.
    const bool checkpoints = replicas_.any(replicas_.is_main() && !options_.run_dir().empty());
    TrainResult result;
    try {
      for (auto& hook : hooks) hook->on_train_begin(state);
      agree_on_stop(state);
      // The state to go back to before the first read: after the hooks (they may load weights).
      if (!check_before_backward_) take_snapshot(state);
      for (int64_t epoch = state.start_epoch; epoch < options_.epochs() && !state.stop; ++epoch) {
        if (!train_epoch(state, hooks, *attached, epoch, started)) break;  // stopped mid-epoch
        result.epochs_completed = epoch + 1;
        if (checkpoints && checkpoint_due(epoch + 1, state)) {
          result.checkpoint = write_checkpoint(epoch + 1, state);
        }
      }
    } catch (...) {
      for (auto& hook : hooks) hook->on_train_end(state);
      throw;
    }
    for (auto& hook : hooks) hook->on_train_end(state);
    return finish(std::move(result), state, started);
  }

  const TrainerOptions& options() const { return options_; }
  Model& model() { return model_; }
  Loss& loss() { return loss_; }
  GradScaler& scaler() { return scaler_; }
  /// The built-in collapse monitor (null without default hooks).
  const std::shared_ptr<CollapseMonitor>& collapse_monitor() const { return collapse_; }

 private:
  /// What one optimiser step gives the hooks.
  struct StepResult {
    torch::Tensor loss;  ///< detached, on the device
    torch::Tensor z1, z2;
    int64_t batch_size = 0;  ///< this rank's
  };

  /// A non-finite loss this rank read, not yet agreed on by the ranks.
  struct BadLoss {
    int64_t step = 0;  ///< global, 1-based
    double value = 0.0;
  };

  /// Trains one epoch; false when a hook stopped it before its end.
  bool train_epoch(TrainState& state, const Hooks& hooks, distributed::Attachment& attached,
                   int64_t epoch, Clock::time_point started) {
    begin_epoch(state, hooks, epoch);
    EpochTimer timer;
    while (auto batch = next_batch(state, timer)) {
      if (schedule_ && options_.schedule_per_step()) step_schedule();
      auto step = train_step(*batch, state, attached);
      losses_.add(step.loss, state.global_step + 1);
      record_step(state, step, timer, started);
      if (state.global_step % read_every_ == 0) read_losses(state, timer);
      for (auto& hook : hooks) hook->on_step_end(state);
      if (state.stop && replicas_.size() == 1) break;  // several ranks agree at the next step
    }
    read_losses(state, timer);
    attached.align_buffers();    // before anything evaluates, saves or copies them
    if (replicas_.size() > 1) {  // the ranks' verdicts on their last losses, and the epoch mean
      const auto agreed = agree(state, true, state.epoch_loss);
      state.epoch_loss = agreed.sum / static_cast<double>(replicas_.size());
    }
    if (state.stop && state.step_in_epoch < state.steps_per_epoch) return false;
    state.seconds = seconds_since(started);
    for (auto& hook : hooks) hook->on_epoch_end(state);
    agree_on_stop(state);
    return true;
  }

  /// One SimSiam step on `batch`: forward, loss, backward, optimiser step.
  StepResult train_step(const Batch& batch, const TrainState& state,
                        distributed::Attachment& attached) {
    auto [x1, x2] = views_on_device(batch, state.global_step);
    StepResult step;
    torch::Tensor loss;
    {
      AutocastGuard autocast(options_.device().type(), options_.amp(),
                             options_.resolved_amp_dtype());
      auto out = model_->forward(x1, x2);
      loss = loss_(out.p1, out.p2, out.z1, out.z2);
      step.z1 = out.z1.detach();
      step.z2 = out.z2.detach();
    }
    step.loss = loss.detach();
    if (check_before_backward_) {
      const double value = replicas_.mean(loss.template item<double>());
      if (!std::isfinite(value)) non_finite(value, state);
    }
    optimizer_.zero_grad();
    scaler_.scale(loss).backward();
    attached.synchronize_gradients();
    scaler_.step(optimizer_);
    scaler_.update();
    step.batch_size = x1.size(0);
    return step;
  }

  /// The two views on the training device, with the device-side augmentations and layout.
  std::pair<torch::Tensor, torch::Tensor> views_on_device(const Batch& batch, int64_t step) const {
    auto x1 = batch.view1.to(options_.device(), /*non_blocking=*/true);
    auto x2 = batch.view2.to(options_.device(), /*non_blocking=*/true);
    if (options_.view_transform()) {
      // One stream per (step, rank): a resumed run draws the same parameters.
      auto generator = at::detail::createCPUGenerator(detail::mix_seed(
          options_.view_transform_seed(), static_cast<uint64_t>(step * 1024 + replicas_.rank())));
      x1 = options_.view_transform()(x1, generator);
      x2 = options_.view_transform()(x2, generator);
    }
    if (options_.channels_last()) {
      x1 = x1.contiguous(at::MemoryFormat::ChannelsLast);
      x2 = x2.contiguous(at::MemoryFormat::ChannelsLast);
    }
    return {std::move(x1), std::move(x2)};
  }

  /// An epoch's running totals: its start, the time spent waiting for the loader, the loss sum
  /// and the images seen.
  struct EpochTimer {
    Clock::time_point start = Clock::now();
    double waited = 0.0;
    double loss_sum = 0.0;  ///< of the losses read so far
    int64_t losses_read = 0;
    int64_t images = 0;
  };

  void begin_epoch(TrainState& state, const Hooks& hooks, int64_t epoch) {
    state.epoch = epoch;
    state.step_in_epoch = 0;
    epoch_first_step_ = state.global_step;
    state.epoch_loss = 0.0;
    state.images_per_second = state.data_wait_fraction = 0.0;
    state.epoch_metrics.clear();
    loader_.set_epoch(epoch);
    state.steps_per_epoch = loader_.batches_per_epoch();
    check_equal_batches(epoch, state.steps_per_epoch);
    if (schedule_ && !options_.schedule_per_step()) step_schedule();
    state.lrs = current_lrs();
    for (auto& hook : hooks) hook->on_epoch_begin(state);
  }

  /// The loader's next batch, or nothing when the epoch ends: at the loader's end, when some rank
  /// ran short, or when some rank asked to stop.
  std::optional<Batch> next_batch(TrainState& state, EpochTimer& timer) {
    const auto wait_start = Clock::now();
    auto batch = loader_.next();
    timer.waited += seconds_since(wait_start);
    if (replicas_.size() == 1) return batch;
    const auto agreed = agree(state, batch.has_value());
    if (agreed.stop) return std::nullopt;
    if (agreed.ranks_with_batch < replicas_.size()) {
      if (agreed.ranks_with_batch > 0 && replicas_.is_main()) {
        std::fprintf(stderr,
                     "\nwarning: %lld of %lld ranks ran out of batches at step %lld of epoch %lld "
                     "(skipped bad images?); the epoch ends there on every rank\n",
                     static_cast<long long>(replicas_.size() - agreed.ranks_with_batch),
                     static_cast<long long>(replicas_.size()),
                     static_cast<long long>(state.step_in_epoch + 1),
                     static_cast<long long>(state.epoch + 1));
      }
      return std::nullopt;
    }
    return batch;
  }

  void record_step(TrainState& state, StepResult& step, EpochTimer& timer,
                   Clock::time_point started) const {
    ++state.global_step;
    ++state.step_in_epoch;
    state.batch_size = step.batch_size * replicas_.size();
    timer.images += state.batch_size;
    const double seconds = seconds_since(timer.start);
    state.z1 = std::move(step.z1);
    state.z2 = std::move(step.z2);
    state.lrs = current_lrs();
    state.images_per_second = seconds > 0 ? static_cast<double>(timer.images) / seconds : 0.0;
    state.data_wait_fraction = seconds > 0 ? timer.waited / seconds : 0.0;
    state.seconds = seconds_since(started);
    state.step_metrics.clear();
  }

  /// The losses since the last read, in one copy: the loss the hooks see, the epoch's mean so
  /// far, and the guard. One process fails here on a non-finite loss; several keep it for the
  /// next exchange, so that all of them stop together.
  void read_losses(TrainState& state, EpochTimer& timer) {
    if (losses_.empty()) return;
    const auto read = losses_.read();
    for (const double value : read.values) timer.loss_sum += value;
    timer.losses_read += static_cast<int64_t>(read.values.size());
    state.loss = read.values.back();
    state.loss_step = read.steps.back();
    state.epoch_loss = timer.loss_sum / static_cast<double>(timer.losses_read);
    if (read.first_bad >= 0 && !bad_) {
      const auto i = static_cast<size_t>(read.first_bad);
      bad_ = BadLoss{read.steps[i], read.values[i]};
    }
    if (replicas_.size() > 1) {
      // Once every rank has said its losses were finite.
      snapshot_due_ = !bad_ && !check_before_backward_;
    } else if (bad_) {
      roll_back(state, 0, *bad_);
    } else if (!check_before_backward_) {
      take_snapshot(state);
    }
  }

  void take_snapshot(const TrainState& state) {
    snapshot_.take(*model_, optimizer_, state.global_step);
    snapshot_due_ = false;
  }

  /// Puts back the last snapshot and fails naming the step (the reads never span an epoch).
  [[noreturn]] void roll_back(const TrainState& state, int64_t rank, const BadLoss& bad) {
    snapshot_.restore(*model_, optimizer_);
    const std::string where =
        replicas_.size() > 1 ? " on rank " + std::to_string(rank) : std::string();
    TORCH_CHECK(false, "simsiam::Trainer: the loss is ", bad.value, " at epoch ", state.epoch + 1,
                ", step ", bad.step - epoch_first_step_, " of ", state.steps_per_epoch,
                " (global step ", bad.step, ")", where,
                "; the weights, buffers and optimiser state are back to those after global step ",
                snapshot_.step(), ", the last read that found every loss finite. ",
                last_good_checkpoint(),
                " Lower the learning rate, or check the inputs for NaN/inf.");
    std::abort();  // unreachable: TORCH_CHECK(false) throws
  }

  static double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  TrainState initial_state() {
    TrainState state;
    state.epochs = options_.epochs();
    state.run_dir = options_.run_dir();
    state.device = options_.device();
    state.model = model_.ptr().get();
    if constexpr (detail::has_features<Model>::value) {
      state.features = [this](const torch::Tensor& x) { return model_->features(x); };
    }
    state.communicator = options_.communicator();
    return state;
  }

  void prepare_model() {
    if (!options_.run_dir().empty() && replicas_.is_main()) {
      std::filesystem::create_directories(options_.run_dir());
    }
    model_->to(options_.device());
    if (options_.channels_last()) to_channels_last();
    model_->train();
    check_schedule();
  }

  TrainResult finish(TrainResult result, const TrainState& state, Clock::time_point started) const {
    if (result.epochs_completed == 0) result.epochs_completed = state.start_epoch;
    result.steps = state.global_step;
    result.stopped = state.stop;
    result.stop_reason = state.stop_reason;
    if (result.checkpoint.empty()) result.checkpoint = last_checkpoint_;
    result.last_epoch = state.epoch_metrics;
    result.last_epoch["loss"] = state.epoch_loss;
    result.seconds = seconds_since(started);
    return result;
  }

  Hooks all_hooks() const {
    Hooks hooks;
    if (collapse_) hooks.push_back(collapse_);
    hooks.insert(hooks.end(), hooks_.begin(), hooks_.end());
    if (options_.default_hooks() && replicas_.is_main()) {
      if (!options_.run_dir().empty()) {
        hooks.push_back(std::make_shared<MetricsLog>(options_.metrics()));
        hooks.push_back(std::make_shared<MetricsPlot>());
      }
      hooks.push_back(std::make_shared<ProgressBar>(options_.progress()));
    }
    return hooks;
  }

  std::vector<double> current_lrs() const {
    std::vector<double> lrs;
    for (const auto& group : optimizer_.param_groups()) lrs.push_back(group.options().get_lr());
    return lrs;
  }

  /// Every rank must run the same number of steps, or the collectives of the longer ones would
  /// wait for ever (until the timeout).
  void check_equal_batches(int64_t epoch, int64_t batches) const {
    const auto all = replicas_.gather(batches);
    for (size_t r = 0; r < all.size(); ++r) {
      TORCH_CHECK(all[r] == batches, "simsiam::Trainer: rank ", replicas_.rank(), " has ", batches,
                  " batches in epoch ", epoch + 1, " but rank ", r, " has ", all[r],
                  "; give every rank an equal shard (LoaderOptions::rank and world_size)");
    }
  }

  /// The ranks' one exchange before a step (and at an epoch's end): a non-finite loss read on
  /// any rank rolls every rank back and stops it with the same error; once all read theirs as
  /// finite, the snapshot moves forward; a stop asked for on one rank (a collapse monitor sees
  /// its own batch) stops every rank. `sum` is summed over the ranks.
  distributed::StepAgreement agree(TrainState& state, bool has_batch, double sum = 0.0) {
    distributed::StepReport report;
    report.has_batch = has_batch;
    report.stop = state.stop;
    report.sum = sum;
    if (bad_) {
      report.bad_step = bad_->step;
      report.bad_value = bad_->value;
    }
    const auto agreed = replicas_.agree(report);
    if (agreed.bad_rank >= 0) {
      roll_back(state, agreed.bad_rank, BadLoss{agreed.bad_step, agreed.bad_value});
    }
    if (snapshot_due_) take_snapshot(state);
    if (agreed.stop && !state.stop) {
      state.stop = true;
      state.stop_reason = "another rank stopped the run";
    }
    return agreed;
  }
  void agree_on_stop(TrainState& state) { agree(state, true); }

  void step_schedule() {
    schedule_.step();
    ++schedule_steps_;
  }

  /// A `Schedule` must span the run, `epochs` positions, or epochs x batches per epoch when
  /// stepped per iteration, and start from position 0.
  void check_schedule() const {
    const Schedule* schedule = schedule_.described();
    if (schedule == nullptr) return;
    const int64_t expected = options_.schedule_per_step()
                                 ? options_.epochs() * loader_.batches_per_epoch()
                                 : options_.epochs();
    TORCH_CHECK(schedule->positions() == expected, "simsiam::Trainer: the ", schedule->name(),
                " spans ", schedule->positions(), " positions but the run needs ", expected,
                options_.schedule_per_step()
                    ? " (epochs x batches per epoch, stepped per iteration)"
                    : " (one per epoch)");
    TORCH_CHECK(schedule->position() == 0, "simsiam::Trainer: the schedule was already stepped ",
                schedule->position(), " times; give the trainer a fresh one");
  }

  /// The user's settings plus what the trainer itself needs unchanged for an exact resume: the
  /// epochs (the schedule depends on them), the optimiser's type and group sizes, the schedule.
  RunConfig full_config() const {
    auto config = options_.config();
    config["trainer.epochs"] = std::to_string(options_.epochs());
    config["trainer.schedule_per_step"] = options_.schedule_per_step() ? "true" : "false";
    config["trainer.optimizer"] = c10::demangle(typeid(optimizer_).name());
    std::string sizes;
    for (const auto& group : optimizer_.param_groups()) {
      sizes += (sizes.empty() ? "" : ",") + std::to_string(group.params().size());
    }
    config["trainer.optimizer_group_sizes"] = sizes;
    if (const Schedule* schedule = schedule_.described()) {
      config["trainer.schedule"] = schedule->description();
    }
    return config;
  }

  /// For error messages: which checkpoint a user can go back to.
  std::string last_good_checkpoint() const {
    if (last_checkpoint_.empty()) return "No checkpoint was written yet.";
    return "The last good checkpoint is '" + last_checkpoint_ + "' (epoch " +
           std::to_string(last_checkpoint_epoch_) + ").";
  }

  [[noreturn]] void non_finite(double value, const TrainState& state) const {
    TORCH_CHECK(false, "simsiam::Trainer: the loss is ", value, " at epoch ", state.epoch + 1,
                ", step ", state.step_in_epoch + 1, " of ", state.steps_per_epoch, " (global step ",
                state.global_step + 1, "); stopped before this step changed the weights. ",
                last_good_checkpoint(),
                " Lower the learning rate, or check the inputs for NaN/inf.");
    std::abort();  // unreachable: TORCH_CHECK(false) throws
  }

  bool checkpoint_due(int64_t epochs_done, const TrainState& state) const {
    return epochs_done % options_.checkpoint_every() == 0 || epochs_done == options_.epochs() ||
           state.stop;
  }

  std::string checkpoint_path() const {
    return (std::filesystem::path(options_.run_dir()) / "checkpoint.pt").string();
  }
  /// Where `keep_checkpoints` keeps the checkpoint after `epochs_done` epochs: named after the
  /// 0-based epoch just trained, as main_simsiam.py names its files.
  std::string kept_checkpoint_path(int64_t epochs_done) const {
    char name[48];
    std::snprintf(name, sizeof name, "checkpoint_%04lld.pt",
                  static_cast<long long>(epochs_done - 1));
    return (std::filesystem::path(options_.run_dir()) / name).string();
  }
  /// The numbered copy of `checkpoint` (after `epochs_done` epochs), with `keep_checkpoints`.
  void keep_copy(const std::string& checkpoint, int64_t epochs_done) const {
    if (!options_.keep_checkpoints()) return;
    detail::copy_file_atomically(checkpoint, kept_checkpoint_path(epochs_done), "simsiam::Trainer");
  }

  std::string write_checkpoint(int64_t epochs_done, const TrainState& state) {
    // A finite loss does not prove finite weights (an inf gradient without the scaler): never
    // replace the last good checkpoint with a broken one. Every rank checks (the replicas are
    // equal), so all of them stop here together.
    const auto params = model_->named_parameters();
    std::vector<torch::Tensor> finite;
    for (const auto& item : params)
      finite.push_back(torch::isfinite(item.value()).all().reshape({1}));
    // One read for all of them.
    const auto flags = finite.empty() ? torch::Tensor() : torch::cat(finite).to(torch::kCPU);
    for (size_t i = 0; i < params.size(); ++i) {
      TORCH_CHECK(flags[static_cast<int64_t>(i)].template item<bool>(),
                  "simsiam::Trainer: parameter '", params[i].key(),
                  "' holds NaN or inf after epoch ", epochs_done,
                  "; no checkpoint written for it. ", last_good_checkpoint());
    }
    // Rank 0 writes for all; the others learn whether it could, rather than wait for it at the
    // next collective when it could not (disk full).
    const std::string path = checkpoint_path();
    std::string failure;
    if (replicas_.is_main()) {
      try {
        save_checkpoint(path, epochs_done, state);
        keep_copy(path, epochs_done);
      } catch (const std::exception& e) {
        if (replicas_.size() == 1) throw;
        const auto* error = dynamic_cast<const c10::Error*>(&e);
        failure = error != nullptr ? error->what_without_backtrace() : e.what();
      }
    }
    TORCH_CHECK(!replicas_.any(!failure.empty()), "simsiam::Trainer: ",
                replicas_.is_main() ? failure
                                    : "rank 0 could not write the checkpoint after epoch " +
                                          std::to_string(epochs_done) + " (its error says why)");
    last_checkpoint_ = path;
    last_checkpoint_epoch_ = epochs_done;
    return path;
  }

  void save_checkpoint(const std::string& path, int64_t epochs_done, const TrainState& state) {
    CheckpointState checkpoint;
    checkpoint.epoch = epochs_done;
    checkpoint.step = state.global_step;
    checkpoint.schedule_steps = schedule_steps_;
    checkpoint.config = full_config();
    checkpoint.tensors["rng/cpu"] = generator_state(torch::kCPU);
    if (options_.device().is_cuda()) {
      checkpoint.tensors["rng/cuda"] = generator_state(options_.device());
    }
    checkpoint.tensors["grad_scaler"] = scaler_.state();
    detail::write_file_atomically(detail::checkpoint_bytes(*model_, &optimizer_, checkpoint), path,
                                  "simsiam::Trainer");
  }

  void resume(TrainState& state) {
    const auto config = full_config();
    const auto checkpoint =
        load_checkpoint(options_.resume(), *model_, &optimizer_, &config, options_.device());
    TORCH_CHECK(checkpoint.epoch <= options_.epochs(), "simsiam::Trainer: '", options_.resume(),
                "' is at epoch ", checkpoint.epoch, ", past the run's ", options_.epochs());
    state.start_epoch = checkpoint.epoch;
    state.epoch = checkpoint.epoch;
    state.global_step = checkpoint.step;
    if (schedule_) {
      for (int64_t i = 0; i < checkpoint.schedule_steps; ++i) step_schedule();
    }
    restore_generators_and_scaler(checkpoint);
    // A run killed between writing checkpoint.pt and copying it to its numbered name gets the
    // copy now.
    if (replicas_.is_main() && !options_.run_dir().empty() && checkpoint.epoch > 0 &&
        !std::filesystem::exists(kept_checkpoint_path(checkpoint.epoch))) {
      keep_copy(options_.resume(), checkpoint.epoch);
    }
    last_checkpoint_ = options_.resume();
    last_checkpoint_epoch_ = checkpoint.epoch;
  }

  void restore_generators_and_scaler(const CheckpointState& checkpoint) {
    const auto find = [&](const char* name) {
      const auto it = checkpoint.tensors.find(name);
      return it == checkpoint.tensors.end() ? torch::Tensor() : it->second;
    };
    if (const auto cpu = find("rng/cpu"); cpu.defined()) set_generator_state(torch::kCPU, cpu);
    if (const auto cuda = find("rng/cuda"); cuda.defined() && options_.device().is_cuda()) {
      set_generator_state(options_.device(), cuda);
    }
    if (const auto scaler = find("grad_scaler"); scaler.defined()) scaler_.load_state(scaler);
  }

  /// The state of LibTorch's default generator of a device, under its lock as Python's
  /// torch.get_rng_state takes it.
  static torch::Tensor generator_state(torch::Device device) {
    at::Generator generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    return generator.get_state();
  }
  static void set_generator_state(torch::Device device, const torch::Tensor& state) {
    at::Generator generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cpu());
  }

  void to_channels_last() {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
    }
  }

  const TrainerOptions options_;
  Model model_;
  Loader& loader_;
  Optimizer& optimizer_;
  ScheduleRef schedule_;
  Loss loss_;
  distributed::Replicas replicas_;
  GradScaler scaler_;
  std::shared_ptr<CollapseMonitor> collapse_;
  Hooks hooks_;
  const int64_t read_every_;
  const bool check_before_backward_;
  detail::PendingLosses losses_;
  detail::TrainingSnapshot snapshot_;
  bool snapshot_due_ = false;
  std::optional<BadLoss> bad_;
  int64_t epoch_first_step_ = 0;
  int64_t schedule_steps_ = 0;
  std::string last_checkpoint_;
  int64_t last_checkpoint_epoch_ = 0;
};

}  // namespace simsiam
