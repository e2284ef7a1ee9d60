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

#include "simsiam/distributed/communicator.hpp"
#include "simsiam/distributed/data_parallel.hpp"
#include "simsiam/distributed/sync_batch_norm.hpp"
#include "simsiam/loss/symmetric_loss.hpp"
#include "simsiam/optim/cosine_schedule.hpp"
#include "simsiam/train/amp.hpp"
#include "simsiam/train/checkpoint.hpp"
#include "simsiam/train/hook.hpp"
#include "simsiam/train/logging.hpp"
#include "simsiam/train/monitors.hpp"

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
  /// Where the model trains; batches are copied there (non-blocking from pinned memory).
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Mixed precision: autocast in `amp_dtype` (default float16 on CUDA, bfloat16 on CPU), with
  /// dynamic loss scaling for float16.
  TORCH_ARG(bool, amp) = false;
  TORCH_ARG(std::optional<torch::ScalarType>, amp_dtype) = std::nullopt;
  /// Convert 4-D weights and the input batches to channels_last (faster convolutions on GPUs).
  TORCH_ARG(bool, channels_last) = false;
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

template <class M, class = void>
struct has_features : std::false_type {};
template <class M>
struct has_features<
    M, std::void_t<decltype(std::declval<M&>()->features(std::declval<torch::Tensor>()))>>
    : std::true_type {};

/// splitmix64 of (seed, step, rank): independent streams per step and rank.
inline uint64_t mix_step_seed(uint64_t seed, int64_t step, int64_t rank) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull *
                          (static_cast<uint64_t>(step) * 1024 + static_cast<uint64_t>(rank) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline std::string checkpoint_name(int64_t epoch) {
  char name[48];
  std::snprintf(name, sizeof name, "checkpoint_%04lld.pt", static_cast<long long>(epoch));
  return name;
}

}  // namespace detail

/// The SimSiam loop: per epoch `loader.set_epoch(e)`, the schedule steps, then for each batch
/// the two views go to the device, `model->forward(x1, x2)` gives {p1, p2, z1, z2},
/// `loss(p1, p2, z1, z2)` is checked to be finite, then zero_grad, backward, optimiser step and
/// the hooks.
///
/// - `Model`: a module holder whose forward takes two views and returns `SimSiamOutput`-like
///   {p1, p2, z1, z2} (`SimSiam<Backbone>` or your own); `features(x)`, when present, feeds
///   `KnnMonitor`.
/// - `Loader`: `simsiam::Loader<Source>` or any type with `set_epoch(e)`,
///   `batches_per_epoch()` and `next()` returning an optional batch with `view1`, `view2`.
/// - `Optimizer`: any `torch::optim::Optimizer` (SGD from `make_sgd`, `Lars`, Adam, ...).
/// - `Loss`: callable as `loss(p1, p2, z1, z2)` returning a scalar (default `SymmetricLoss`).
///
/// Checkpoints hold the weights, the optimiser state (momentum buffers), the position (epoch,
/// step, schedule steps), the RNG states, the gradient scaler and `options.config`; they are
/// written atomically. `resume` continues at the next epoch, and on CPU gives bit-identical
/// weights to a run that was never interrupted (same threads, same loader seed).
///
/// With `options.communicator` on N ranks (one process each, every rank calling `fit`): rank 0's
/// weights go to all ranks, BatchNorm is synchronised, gradients are averaged during backward,
/// the loss is the mean over the ranks (so a non-finite loss stops every rank with the same
/// error), a hook that stops the run on one rank stops it on all, and only rank 0 writes files
/// (checkpoints, metrics, plot, progress bar); every rank learns whether rank 0 could write the
/// checkpoint. Every rank must plan the same number of batches per epoch (checked); a rank whose
/// loader runs short ends the epoch on every rank.
template <class Model, class Loader, class Optimizer = torch::optim::SGD,
          class Loss = SymmetricLoss<>>
class Trainer {
  static_assert(std::is_base_of_v<torch::optim::Optimizer, Optimizer>,
                "simsiam::Trainer: Optimizer must derive from torch::optim::Optimizer");

 public:
  /// `loader`, `optimizer` and `schedule` (may be null) are used by reference and must outlive
  /// the trainer.
  Trainer(Model model, Loader& loader, Optimizer& optimizer, torch::optim::LRScheduler* schedule,
          TrainerOptions options, Loss loss = Loss())
      : options(std::move(options)),
        model_(std::move(model)),
        loader_(loader),
        optimizer_(optimizer),
        schedule_(schedule),
        loss_(std::move(loss)) {
    constexpr const char* kWhere = "simsiam::Trainer";
    TORCH_CHECK(this->options.epochs() > 0, kWhere, ": expected epochs > 0, got ",
                this->options.epochs());
    TORCH_CHECK(this->options.checkpoint_every() > 0, kWhere,
                ": expected checkpoint_every > 0, got ", this->options.checkpoint_every());
    TORCH_CHECK(
        this->options.resume().empty() || std::filesystem::is_regular_file(this->options.resume()),
        kWhere, ": the checkpoint to resume from, '", this->options.resume(), "', does not exist");
    TORCH_CHECK(
        !this->options.amp() || this->options.device().is_cuda() || this->options.device().is_cpu(),
        kWhere, ": mixed precision needs a CPU or CUDA device, got ", this->options.device());
    if (this->options.default_hooks()) {
      collapse_ = std::make_shared<CollapseMonitor>(this->options.collapse());
    }
    scaler_.options.enabled(this->options.amp() && amp_dtype() == torch::kHalf);
  }

  /// Adds a hook, run after the hooks added before it (and after the built-in collapse monitor,
  /// before the built-in progress bar, metrics log and plot).
  void add_hook(std::shared_ptr<Hook> hook) { hooks_.push_back(std::move(hook)); }

  /// Trains from epoch 0, or from the checkpoint in `options.resume`, up to `options.epochs`.
  TrainResult fit() {
    const auto started = std::chrono::steady_clock::now();
    auto hooks = all_hooks();
    TrainState state;
    state.epochs = options.epochs();
    state.run_dir = options.run_dir();
    state.device = options.device();
    state.model = model_.ptr().get();
    if constexpr (detail::has_features<Model>::value) {
      state.features = [this](const torch::Tensor& x) { return model_->features(x); };
    }
    state.communicator = options.communicator();
    if (!options.run_dir().empty() && is_main_rank()) {
      std::filesystem::create_directories(options.run_dir());
    }
    model_->to(options.device());
    if (options.channels_last()) to_channels_last();
    model_->train();
    check_schedule();
    if (!options.resume().empty()) resume(state);
    std::unique_ptr<distributed::DataParallel> parallel;
    const bool attach_sync_bn = world_size() > 1 && options.sync_batch_norm();
    if (world_size() > 1) {
      if (attach_sync_bn) distributed::convert_sync_batchnorm(*model_, options.communicator());
      parallel = std::make_unique<distributed::DataParallel>(*model_, *options.communicator(),
                                                             options.data_parallel());
      parallel->broadcast_state();
    }
    parallel_ = parallel.get();
    // After fit, the model no longer refers to the ranks: its BatchNorms are per-process again.
    struct Detach {
      Trainer& trainer;
      bool sync_bn;
      ~Detach() {
        trainer.parallel_ = nullptr;
        if (sync_bn) distributed::convert_sync_batchnorm(*trainer.model_, nullptr);
      }
    } detach{*this, attach_sync_bn};

    // Rank 0's run folder decides for all: the others join its checkpoint agreement even when
    // they were given no folder.
    bool checkpoints = !options.run_dir().empty();
    if (world_size() > 1) {
      std::vector<torch::Tensor> flag{
          torch::full({1}, is_main_rank() && checkpoints ? 1.0 : 0.0, torch::kDouble)};
      options.communicator()->all_reduce_sum(flag);
      checkpoints = flag[0].template item<double>() > 0;
    }

    TrainResult result;
    try {
      for (auto& hook : hooks) hook->on_train_begin(state);
      agree_on_stop(state);
      for (int64_t epoch = state.start_epoch; epoch < options.epochs() && !state.stop; ++epoch) {
        if (!run_epoch(state, hooks, epoch, started)) break;  // stopped mid-epoch: no checkpoint
        result.epochs_completed = epoch + 1;
        if (checkpoints && ((epoch + 1) % options.checkpoint_every() == 0 ||
                            epoch + 1 == options.epochs() || state.stop)) {
          result.checkpoint = write_checkpoint(epoch + 1, state);
        }
      }
    } catch (...) {
      for (auto& hook : hooks) hook->on_train_end(state);
      throw;
    }
    for (auto& hook : hooks) hook->on_train_end(state);
    if (result.epochs_completed == 0) result.epochs_completed = state.start_epoch;
    result.steps = state.global_step;
    result.stopped = state.stop;
    result.stop_reason = state.stop_reason;
    if (result.checkpoint.empty()) result.checkpoint = last_checkpoint_;
    result.last_epoch = state.epoch_metrics;
    result.last_epoch["loss"] = state.epoch_loss;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
  }

  Model& model() { return model_; }
  Loss& loss() { return loss_; }
  GradScaler& scaler() { return scaler_; }
  /// The built-in collapse monitor (null without default hooks).
  const std::shared_ptr<CollapseMonitor>& collapse_monitor() const { return collapse_; }

  TrainerOptions options;

 private:
  int64_t world_size() const { return distributed::world_size(options.communicator()); }
  bool is_main_rank() const { return distributed::rank(options.communicator()) == 0; }

  /// Every rank must run the same number of steps, or the collectives of the longer ones would
  /// wait for ever (until the timeout).
  void check_equal_batches(int64_t epoch, int64_t batches) const {
    if (world_size() == 1) return;
    const auto all =
        distributed::gather_rows(options.communicator(), torch::full({1}, batches, torch::kLong));
    for (int64_t r = 0; r < world_size(); ++r) {
      TORCH_CHECK(all[r].template item<int64_t>() == batches, "simsiam::Trainer: rank ",
                  distributed::rank(options.communicator()), " has ", batches, " batches in epoch ",
                  epoch + 1, " but rank ", r, " has ", all[r].template item<int64_t>(),
                  "; give every rank an equal shard (LoaderOptions::rank and world_size)");
    }
  }

  torch::ScalarType amp_dtype() const {
    return options.amp_dtype().value_or(options.device().is_cuda() ? torch::kHalf
                                                                   : torch::kBFloat16);
  }

  std::vector<std::shared_ptr<Hook>> all_hooks() const {
    std::vector<std::shared_ptr<Hook>> hooks;
    if (collapse_) hooks.push_back(collapse_);
    hooks.insert(hooks.end(), hooks_.begin(), hooks_.end());
    if (options.default_hooks() && is_main_rank()) {
      if (!options.run_dir().empty()) {
        hooks.push_back(std::make_shared<MetricsLog>(options.metrics()));
        hooks.push_back(std::make_shared<MetricsPlot>());
      }
      hooks.push_back(std::make_shared<ProgressBar>(options.progress()));
    }
    return hooks;
  }

  std::vector<double> current_lrs() const {
    std::vector<double> lrs;
    for (const auto& group : optimizer_.param_groups()) lrs.push_back(group.options().get_lr());
    return lrs;
  }

  /// Trains one epoch; false when a hook stopped it before its end.
  bool run_epoch(TrainState& state, const std::vector<std::shared_ptr<Hook>>& hooks, int64_t epoch,
                 std::chrono::steady_clock::time_point started) {
    using clock = std::chrono::steady_clock;
    state.epoch = epoch;
    state.step_in_epoch = 0;
    state.epoch_loss = 0.0;
    state.images_per_second = state.data_wait_fraction = 0.0;
    state.epoch_metrics.clear();
    loader_.set_epoch(epoch);
    state.steps_per_epoch = loader_.batches_per_epoch();
    check_equal_batches(epoch, state.steps_per_epoch);
    if (schedule_ != nullptr && !options.schedule_per_step()) step_schedule();
    state.lrs = current_lrs();
    for (auto& hook : hooks) hook->on_epoch_begin(state);

    const auto epoch_start = clock::now();
    double wait = 0.0, loss_sum = 0.0;
    int64_t images = 0;
    while (true) {
      const auto wait_start = clock::now();
      auto batch = loader_.next();
      wait += std::chrono::duration<double>(clock::now() - wait_start).count();
      if (world_size() > 1) {
        // One exchange per step: whether each rank has a batch (a loader skips a batch of only
        // bad images, so a rank may run short) and whether a hook asked to stop after the last
        // step. Every rank then takes the same branch, and the collectives stay paired.
        const auto [ranks_with_batch, stop] = agree_on_step(batch.has_value(), state);
        if (stop) break;
        if (ranks_with_batch < world_size()) {
          if (ranks_with_batch > 0 && is_main_rank()) {
            std::fprintf(stderr,
                         "\nwarning: %lld of %lld ranks ran out of batches at step %lld of epoch "
                         "%lld (skipped bad images?); the epoch ends there on every rank\n",
                         static_cast<long long>(world_size() - ranks_with_batch),
                         static_cast<long long>(world_size()),
                         static_cast<long long>(state.step_in_epoch + 1),
                         static_cast<long long>(epoch + 1));
          }
          break;
        }
      }
      if (!batch) break;
      if (schedule_ != nullptr && options.schedule_per_step()) step_schedule();
      auto x1 = batch->view1.to(options.device(), /*non_blocking=*/true);
      auto x2 = batch->view2.to(options.device(), /*non_blocking=*/true);
      if (options.view_transform()) {
        auto generator = at::detail::createCPUGenerator(
            detail::mix_step_seed(options.view_transform_seed(), state.global_step,
                                  distributed::rank(options.communicator())));
        x1 = options.view_transform()(x1, generator);
        x2 = options.view_transform()(x2, generator);
      }
      if (options.channels_last()) {
        x1 = x1.contiguous(at::MemoryFormat::ChannelsLast);
        x2 = x2.contiguous(at::MemoryFormat::ChannelsLast);
      }
      torch::Tensor loss;
      torch::Tensor z1, z2;
      {
        AutocastGuard autocast(options.device().type(), options.amp(), amp_dtype());
        auto out = model_->forward(x1, x2);
        loss = loss_(out.p1, out.p2, out.z1, out.z2);
        z1 = out.z1.detach();
        z2 = out.z2.detach();
      }
      const double value =
          distributed::all_reduce_mean(options.communicator(), loss.template item<double>());
      if (!std::isfinite(value)) non_finite(value, state);
      optimizer_.zero_grad();
      scaler_.scale(loss).backward();
      if (parallel_ != nullptr) parallel_->synchronize_gradients();
      scaler_.step(optimizer_);
      scaler_.update();

      ++state.global_step;
      ++state.step_in_epoch;
      images += x1.size(0) * world_size();
      loss_sum += value;
      const double seconds = std::chrono::duration<double>(clock::now() - epoch_start).count();
      state.loss = value;
      state.batch_size = x1.size(0) * world_size();
      state.z1 = std::move(z1);
      state.z2 = std::move(z2);
      state.lrs = current_lrs();
      state.epoch_loss = loss_sum / static_cast<double>(state.step_in_epoch);
      state.images_per_second = seconds > 0 ? static_cast<double>(images) / seconds : 0.0;
      state.data_wait_fraction = seconds > 0 ? wait / seconds : 0.0;
      state.seconds = std::chrono::duration<double>(clock::now() - started).count();
      state.step_metrics.clear();
      for (auto& hook : hooks) hook->on_step_end(state);
      if (state.stop && world_size() == 1) break;  // several ranks agree at the next step
    }
    if (state.stop && state.step_in_epoch < state.steps_per_epoch) return false;
    // Per-process BatchNorm lets the replicas' running statistics drift apart: rank 0's go to
    // all before anything evaluates or saves them (DDP's broadcast_buffers).
    if (parallel_ != nullptr && !options.sync_batch_norm()) parallel_->broadcast_buffers();
    state.seconds = std::chrono::duration<double>(clock::now() - started).count();
    for (auto& hook : hooks) hook->on_epoch_end(state);
    agree_on_stop(state);
    return true;
  }

  /// {ranks that have a batch, whether any rank asked to stop}; a stop asked for on one rank
  /// (a collapse monitor sees its own batch) stops every rank.
  std::pair<int64_t, bool> agree_on_step(bool has_batch, TrainState& state) const {
    std::vector<torch::Tensor> flags{
        torch::tensor({has_batch ? 1.0 : 0.0, state.stop ? 1.0 : 0.0}, torch::kDouble)};
    options.communicator()->all_reduce_sum(flags);
    const auto values = flags[0].accessor<double, 1>();
    if (values[1] > 0 && !state.stop) {
      state.stop = true;
      state.stop_reason = "another rank stopped the run";
    }
    return {static_cast<int64_t>(values[0]), state.stop};
  }
  void agree_on_stop(TrainState& state) const {
    if (world_size() > 1) agree_on_step(true, state);
  }

  void step_schedule() {
    schedule_->step();
    ++schedule_steps_;
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

  /// The user's settings plus what the trainer itself needs unchanged for an exact resume: the
  /// epochs (the schedule depends on them), the optimiser's type and group sizes, the schedule.
  RunConfig full_config() const {
    auto config = options.config();
    config["trainer.epochs"] = std::to_string(options.epochs());
    config["trainer.schedule_per_step"] = options.schedule_per_step() ? "true" : "false";
    config["trainer.optimizer"] = c10::demangle(typeid(optimizer_).name());
    std::string sizes;
    for (const auto& group : optimizer_.param_groups()) {
      sizes += (sizes.empty() ? "" : ",") + std::to_string(group.params().size());
    }
    config["trainer.optimizer_group_sizes"] = sizes;
    if (const auto* cosine = dynamic_cast<const CosineSchedule*>(schedule_)) {
      std::string fixed;
      for (const auto g : cosine->options.fixed_groups()) {
        fixed += (fixed.empty() ? "" : ",") + std::to_string(g);
      }
      config["trainer.schedule"] = "cosine total " + std::to_string(cosine->options.total()) +
                                   " warmup " + std::to_string(cosine->options.warmup()) +
                                   " fixed {" + fixed + "}";
    }
    return config;
  }

  /// A `CosineSchedule` must span the run: `epochs` positions, or epochs x batches per epoch
  /// when stepped per iteration; and start from position 0.
  void check_schedule() {
    const auto* cosine = dynamic_cast<const CosineSchedule*>(schedule_);
    if (cosine == nullptr) return;
    const int64_t expected = options.schedule_per_step()
                                 ? options.epochs() * loader_.batches_per_epoch()
                                 : options.epochs();
    TORCH_CHECK(cosine->options.total() == expected, "simsiam::Trainer: the cosine schedule spans ",
                cosine->options.total(), " positions but the run needs ", expected,
                options.schedule_per_step() ? " (epochs x batches per epoch, stepped per iteration)"
                                            : " (one per epoch)");
    TORCH_CHECK(cosine->position() == 0, "simsiam::Trainer: the schedule was already stepped ",
                cosine->position(), " times; give the trainer a fresh one");
  }

  std::string write_checkpoint(int64_t epochs_done, const TrainState& state) {
    const auto dir = std::filesystem::path(options.run_dir());
    const std::string path = (dir / "checkpoint.pt").string();
    // A finite loss does not prove finite weights (an inf gradient without the scaler): never
    // replace the last good checkpoint with a broken one. Every rank checks (the replicas are
    // equal), so all of them stop here together.
    for (const auto& item : model_->named_parameters()) {
      TORCH_CHECK(torch::isfinite(item.value()).all().template item<bool>(),
                  "simsiam::Trainer: parameter '", item.key(), "' holds NaN or inf after epoch ",
                  epochs_done, "; no checkpoint written for it. ", last_good_checkpoint());
    }
    // Rank 0 writes for all; the others learn whether it could, rather than wait for it at the
    // next collective when it could not (disk full).
    std::string failure;
    if (is_main_rank()) {
      try {
        save_checkpoint_files(path, epochs_done, state);
      } catch (const c10::Error& e) {
        if (world_size() == 1) throw;
        failure = e.what_without_backtrace();
      } catch (const std::exception& e) {
        if (world_size() == 1) throw;
        failure = e.what();
      }
    }
    if (world_size() > 1) {
      std::vector<torch::Tensor> ok{torch::full({1}, failure.empty() ? 0.0 : 1.0, torch::kDouble)};
      options.communicator()->all_reduce_sum(ok);
      TORCH_CHECK(ok[0].template item<double>() == 0, "simsiam::Trainer: ",
                  is_main_rank() ? failure
                                 : "rank 0 could not write the checkpoint after epoch " +
                                       std::to_string(epochs_done) + " (its error says why)");
    }
    last_checkpoint_ = path;
    last_checkpoint_epoch_ = epochs_done;
    return path;
  }

  void save_checkpoint_files(const std::string& path, int64_t epochs_done,
                             const TrainState& state) {
    CheckpointState checkpoint;
    checkpoint.epoch = epochs_done;
    checkpoint.step = state.global_step;
    checkpoint.schedule_steps = schedule_steps_;
    checkpoint.config = full_config();
    checkpoint.tensors["rng/cpu"] = generator_state(torch::kCPU);
    if (options.device().is_cuda()) {
      checkpoint.tensors["rng/cuda"] = generator_state(options.device());
    }
    checkpoint.tensors["grad_scaler"] = scaler_.state();
    const auto bytes = detail::checkpoint_bytes(*model_, &optimizer_, checkpoint);
    detail::write_file_atomically(bytes, path, "simsiam::Trainer");
    if (options.keep_checkpoints()) {
      detail::write_file_atomically(bytes, kept_checkpoint_path(epochs_done), "simsiam::Trainer");
    }
  }

  /// Where `keep_checkpoints` keeps the checkpoint after `epochs_done` epochs.
  std::string kept_checkpoint_path(int64_t epochs_done) const {
    return (std::filesystem::path(options.run_dir()) / detail::checkpoint_name(epochs_done - 1))
        .string();
  }

  void resume(TrainState& state) {
    const auto config = full_config();
    const auto checkpoint =
        load_checkpoint(options.resume(), *model_, &optimizer_, &config, options.device());
    TORCH_CHECK(checkpoint.epoch <= options.epochs(), "simsiam::Trainer: '", options.resume(),
                "' is at epoch ", checkpoint.epoch, ", past the run's ", options.epochs());
    state.start_epoch = checkpoint.epoch;
    state.epoch = checkpoint.epoch;
    state.global_step = checkpoint.step;
    if (schedule_ != nullptr) {
      for (int64_t i = 0; i < checkpoint.schedule_steps; ++i) step_schedule();
    }
    const auto find = [&](const char* name) {
      const auto it = checkpoint.tensors.find(name);
      return it == checkpoint.tensors.end() ? torch::Tensor() : it->second;
    };
    if (const auto cpu = find("rng/cpu"); cpu.defined()) {
      set_generator_state(torch::kCPU, cpu);
    }
    if (const auto cuda = find("rng/cuda"); cuda.defined() && options.device().is_cuda()) {
      set_generator_state(options.device(), cuda);
    }
    if (const auto scaler = find("grad_scaler"); scaler.defined()) scaler_.load_state(scaler);
    // A run killed between writing checkpoint.pt and copying it to its numbered name gets the
    // copy now.
    if (options.keep_checkpoints() && is_main_rank() && !options.run_dir().empty() &&
        checkpoint.epoch > 0 && !std::filesystem::exists(kept_checkpoint_path(checkpoint.epoch))) {
      detail::copy_file_atomically(options.resume(), kept_checkpoint_path(checkpoint.epoch),
                                   "simsiam::Trainer");
    }
    last_checkpoint_ = options.resume();
    last_checkpoint_epoch_ = checkpoint.epoch;
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

  Model model_;
  Loader& loader_;
  Optimizer& optimizer_;
  torch::optim::LRScheduler* schedule_;
  Loss loss_;
  GradScaler scaler_;
  std::shared_ptr<CollapseMonitor> collapse_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  distributed::DataParallel* parallel_ = nullptr;  // during fit, with several ranks
  int64_t schedule_steps_ = 0;
  std::string last_checkpoint_;
  int64_t last_checkpoint_epoch_ = 0;
};

}  // namespace simsiam
