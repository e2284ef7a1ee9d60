// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief `Schedule`: a learning-rate schedule that states what it spans and describes itself, so
/// a trainer can check it against the run and record it in checkpoints; `ScheduleRef`, the
/// trainer's handle on any LibTorch schedule.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace simsiam {

/// A LibTorch `LRScheduler` that knows its extent and its settings.
class Schedule : public torch::optim::LRScheduler {
 public:
  using torch::optim::LRScheduler::LRScheduler;

  /// What the schedule is, for error messages ("cosine schedule").
  virtual std::string name() const = 0;
  /// Its settings in one line; a resumed run must find the same in the checkpoint.
  virtual std::string description() const = 0;
  /// Positions (calls of `step()`) it spans.
  virtual int64_t positions() const = 0;
  /// Calls of `step()` so far.
  int64_t position() const { return static_cast<int64_t>(step_count_); }
};

/// The schedule a trainer steps: null, any LibTorch `LRScheduler` (stepped, nothing more), or a
/// `Schedule`, which the trainer also checks against the run and records in checkpoints.
class ScheduleRef {
 public:
  ScheduleRef(std::nullptr_t = nullptr) {}                                        // NOLINT
  ScheduleRef(torch::optim::LRScheduler* schedule) : schedule_(schedule) {}       // NOLINT
  ScheduleRef(Schedule* schedule) : schedule_(schedule), described_(schedule) {}  // NOLINT

  explicit operator bool() const { return schedule_ != nullptr; }
  void step() const { schedule_->step(); }
  /// The schedule as a `Schedule`, or null for a plain LibTorch one.
  const Schedule* described() const { return described_; }

 private:
  torch::optim::LRScheduler* schedule_ = nullptr;
  const Schedule* described_ = nullptr;
};

}  // namespace simsiam
