// SPDX-License-Identifier: BSD-3-Clause
// The trainer: exact resume, the non-finite loss guard, the schedule it drives, bad options.
#include "simsiam/train/trainer.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "simsiam/optim/lars.hpp"
#include "support/catch.hpp"
#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

namespace {

const auto kRecipe = simsiam::SgdRecipe().base_lr(0.1).batch_size(16).weight_decay(5e-4);

/// Trains a fresh tiny model for `epochs` (or resumes) and returns it; `per_step` steps the
/// schedule per iteration.
T::TinyModel train(const std::string& run_dir, int64_t epochs, const std::string& resume = "",
                   std::shared_ptr<simsiam::Hook> hook = nullptr, uint64_t init_seed = 0,
                   simsiam::TrainResult* result = nullptr, bool per_step = false) {
  auto model = T::tiny_model(init_seed);
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  auto schedule = simsiam::make_cosine_schedule(
      sgd, kRecipe, per_step ? epochs * loader.batches_per_epoch() : epochs);
  simsiam::Trainer trainer(model, loader, sgd, &schedule,
                           T::quiet_options(epochs, run_dir)
                               .resume(resume)
                               .schedule_per_step(per_step)
                               .config({{"lr", "0.1"}, {"dim", "16"}}));
  if (hook) trainer.add_hook(hook);
  const auto out = trainer.fit();
  if (result != nullptr) *result = out;
  return model;
}

/// The loss, times NaN from its `from`-th call on.
struct NanLossFrom {
  explicit NanLossFrom(int from) : from(from) {}
  torch::Tensor operator()(const torch::Tensor& p1, const torch::Tensor& p2,
                           const torch::Tensor& z1, const torch::Tensor& z2) {
    const auto value = loss(p1, p2, z1, z2);
    return ++*calls >= from ? value * std::nan("") : value;
  }
  int from;
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  simsiam::SymmetricLoss<> loss;
};

}  // namespace

TEST_CASE("a run stopped after epoch k and resumed equals an uninterrupted run bit for bit",
          "[train][trainer][resume]") {
  T::ScratchDir straight("straight"), interrupted("interrupted");
  simsiam::TrainResult result;
  const auto reference = train(straight.str(), 3, "", nullptr, 0, &result);
  CHECK(result.epochs_completed == 3);
  CHECK(result.steps == 9);

  train(interrupted.str(), 3, "", std::make_shared<T::StopAfterEpoch>(0), 0, &result);
  CHECK(result.stopped);
  CHECK(result.epochs_completed == 1);
  REQUIRE(result.checkpoint == interrupted / "checkpoint.pt");

  // Another initialisation: everything must come from the checkpoint.
  const auto resumed =
      train(interrupted.str(), 3, interrupted / "checkpoint.pt", nullptr, 123, &result);
  CHECK(result.epochs_completed == 3);
  CHECK(result.steps == 9);
  CHECK(T::identical(*reference, *resumed));

  // The same with the schedule stepped per iteration.
  T::ScratchDir straight_steps("straight_steps"), interrupted_steps("interrupted_steps");
  const auto reference_steps = train(straight_steps.str(), 3, "", nullptr, 0, nullptr, true);
  train(interrupted_steps.str(), 3, "", std::make_shared<T::StopAfterEpoch>(1), 0, nullptr, true);
  const auto resumed_steps = train(interrupted_steps.str(), 3, interrupted_steps / "checkpoint.pt",
                                   nullptr, 5, nullptr, true);
  CHECK(T::identical(*reference_steps, *resumed_steps));
  CHECK_FALSE(T::identical(*reference, *reference_steps));  // the per-step lrs differ

  // The checkpoint carries the momentum buffers: one per parameter that had a gradient.
  auto model = T::tiny_model(0);
  auto sgd = simsiam::make_sgd(model, kRecipe);
  simsiam::load_checkpoint(interrupted / "checkpoint.pt", *model, &sgd);
  size_t trained = 0;
  for (const auto& p : model->parameters()) trained += p.requires_grad() ? 1 : 0;
  CHECK(sgd.state().size() == trained);
}

TEST_CASE("the trainer keeps the predictor at its initial lr while the encoder's decays",
          "[train][trainer][schedule]") {
  struct RecordLrs : simsiam::Hook {
    void on_epoch_begin(simsiam::TrainState& state) override { lrs.push_back(state.lrs); }
    std::vector<std::vector<double>> lrs;
  };
  auto record = std::make_shared<RecordLrs>();
  train("", 3, "", record);
  REQUIRE(record->lrs.size() == 3);
  const double lr = kRecipe.lr();  // 0.1 x 16 / 256
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    INFO("epoch " << epoch);
    CHECK(record->lrs[static_cast<size_t>(epoch)][0] ==
          Approx(simsiam::functional::cosine_lr(lr, epoch, 3)));
    CHECK(record->lrs[static_cast<size_t>(epoch)][1] == Approx(lr));
  }
}

TEST_CASE("a non-finite loss stops the run before the weights change and keeps the checkpoint",
          "[train][trainer][guard]") {
  // The loss turns NaN at the 5th step (epoch 2, step 2); epoch 1 was checkpointed.
  struct Snapshot : simsiam::Hook {
    void on_step_end(simsiam::TrainState& state) override {
      weights.clear();
      for (const auto& p : state.model->parameters()) weights.push_back(p.detach().clone());
    }
    std::vector<torch::Tensor> weights;
  };
  T::ScratchDir dir("nan");
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 3);
  simsiam::Trainer trainer(model, loader, sgd, &schedule, T::quiet_options(3, dir.str()),
                           NanLossFrom(5));
  auto snapshot = std::make_shared<Snapshot>();
  trainer.add_hook(snapshot);
  CHECK_THROWS_WITH(
      trainer.fit(),
      Contains("the loss is nan at epoch 2, step 2 of 3 (global step 5)") &&
          Contains("stopped before this step changed the weights") &&
          Contains("last good checkpoint is '" + (dir / "checkpoint.pt") + "' (epoch 1)"));
  const auto params = model->parameters();
  REQUIRE(params.size() == snapshot->weights.size());
  for (size_t i = 0; i < params.size(); ++i) CHECK(torch::equal(params[i], snapshot->weights[i]));
  // The checkpoint is intact and resumable.
  auto fresh = T::tiny_model(9);
  const auto state = simsiam::load_checkpoint(dir / "checkpoint.pt", *fresh, nullptr);
  CHECK(state.epoch == 1);
  CHECK(state.step == 3);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint.pt.tmp"));
}

namespace {

/// Copies of the parameters, buffers and momentum buffers after each step, and the step of
/// the loss each step's hooks saw.
struct RecordEverything : simsiam::Hook {
  explicit RecordEverything(torch::optim::SGD& sgd) : sgd(sgd) {}
  void on_step_end(simsiam::TrainState& state) override {
    std::vector<torch::Tensor> all;
    for (const auto& p : state.model->parameters()) all.push_back(p.detach().clone());
    for (const auto& b : state.model->buffers()) all.push_back(b.clone());
    for (const auto& p : state.model->parameters()) {
      const auto it = sgd.state().find(
          simsiam::detail::param_state_key<std::decay_t<decltype(sgd.state())>>(p));
      if (it == sgd.state().end()) continue;
      all.push_back(
          static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer().clone());
    }
    after_step.push_back(all);
    loss_steps.push_back(state.loss_step);
    losses.push_back(state.loss);
  }
  torch::optim::SGD& sgd;
  std::vector<std::vector<torch::Tensor>> after_step;
  std::vector<int64_t> loss_steps;
  std::vector<double> losses;
};

std::vector<torch::Tensor> everything(simsiam::testing::TinyModel& model, torch::optim::SGD& sgd) {
  RecordEverything record(sgd);
  simsiam::TrainState state;
  state.model = model.ptr().get();
  record.on_step_end(state);
  return record.after_step.front();
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("losses read every few steps: same training, reads only on those steps",
          "[train][trainer][guard]") {
  // 3 steps per epoch: reads every 2 steps land on steps 2, 4 and 6, and at the epoch ends
  // (after step 3's hooks).
  const auto run = [](std::optional<int64_t> read_every, simsiam::TrainResult& result,
                      std::vector<int64_t>* loss_steps, const std::string& run_dir = "") {
    auto model = T::tiny_model();
    auto loader = T::tiny_loader();
    auto sgd = simsiam::make_sgd(model, kRecipe);
    auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 2);
    simsiam::Trainer trainer(model, loader, sgd, &schedule,
                             T::quiet_options(2, run_dir).read_every(read_every));
    auto record = std::make_shared<RecordEverything>(sgd);
    trainer.add_hook(record);
    result = trainer.fit();
    if (loss_steps != nullptr) *loss_steps = record->loss_steps;
    return model;
  };
  T::ScratchDir dir("read_every");
  simsiam::TrainResult every_step, every_two;
  std::vector<int64_t> loss_steps;
  const auto reference = run(std::nullopt, every_step, nullptr);
  const auto deferred = run(2, every_two, &loss_steps, dir.str());
  CHECK(T::identical(*reference, *deferred));
  CHECK(every_two.last_epoch.at("loss") == every_step.last_epoch.at("loss"));  // bit for bit
  CHECK(loss_steps == std::vector<int64_t>{0, 2, 2, 4, 4, 6});
  // Step rows only where the step's loss was read (metrics every step): steps 2, 4 and 6.
  std::ifstream csv(dir / "metrics.csv");
  int step_rows = 0;
  for (std::string line; std::getline(csv, line);) step_rows += line.rfind("step,", 0) == 0;
  CHECK(step_rows == 3);
  CHECK_THROWS_WITH(T::quiet_options(1, "").read_every(0).check(),
                    Contains("expected read_every > 0, got 0"));
}

TEST_CASE("a non-finite loss found at a later read puts back the last good read's state",
          "[train][trainer][guard]") {
  // NaN from the 5th step (epoch 2, step 2); reads every 4 steps and at the epoch ends (3, 4,
  // 6): the read after step 6 finds it and goes back to the state after step 4.
  T::ScratchDir dir("nan_deferred");
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 3);
  simsiam::Trainer trainer(model, loader, sgd, &schedule,
                           T::quiet_options(3, dir.str()).read_every(4), NanLossFrom(5));
  auto record = std::make_shared<RecordEverything>(sgd);
  trainer.add_hook(record);
  CHECK_THROWS_WITH(
      trainer.fit(),
      Contains("the loss is nan at epoch 2, step 2 of 3 (global step 5)") &&
          Contains("back to those after global step 4, the last read that found every loss") &&
          Contains("last good checkpoint is '" + (dir / "checkpoint.pt") + "' (epoch 1)"));
  REQUIRE(record->after_step.size() == 6);  // steps 5 and 6 ran: nothing read them yet
  CHECK_FALSE(all_equal(record->after_step[5], record->after_step[3]));
  CHECK(all_equal(everything(model, sgd), record->after_step[3]));  // after step 4
  CHECK(record->loss_steps == std::vector<int64_t>{0, 0, 0, 4, 4, 4});
}

TEST_CASE("bad trainer options and resume files fail with a clear message", "[train][trainer]") {
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  using Trainer = simsiam::Trainer<T::TinyModel, simsiam::Loader<T::TinySource>>;
  CHECK_THROWS_WITH(Trainer(model, loader, sgd, nullptr, T::quiet_options(0, "")),
                    Contains("expected epochs > 0, got 0"));
  CHECK_THROWS_WITH(Trainer(model, loader, sgd, nullptr, T::quiet_options(-3, "")),
                    Contains("expected epochs > 0, got -3"));
  CHECK_THROWS_WITH(
      Trainer(model, loader, sgd, nullptr, T::quiet_options(2, "").checkpoint_every(0)),
      Contains("expected checkpoint_every > 0, got 0"));
  CHECK_THROWS_WITH(
      Trainer(model, loader, sgd, nullptr, T::quiet_options(2, "").resume("/nonexistent/c.pt")),
      Contains("the checkpoint to resume from, '/nonexistent/c.pt', does not exist"));
  simsiam::LoaderOptions zero_batch;
  zero_batch.batch_size(0);
  CHECK_THROWS_WITH(
      simsiam::Loader<T::TinySource>(
          T::TinySource{T::tiny_data(), simsiam::augment::simsiam_grayscale(12)}, zero_batch),
      Contains("expected batch_size > 0, got 0"));

  // A checkpoint of another model, or of another configuration, is refused.
  T::ScratchDir dir("refuse");
  train(dir.str(), 1);
  const auto path = dir / "checkpoint.pt";
  {
    auto wide = T::tiny_model(0, /*dim=*/32);
    auto wide_sgd = simsiam::make_sgd(wide, kRecipe);
    simsiam::Trainer trainer(
        wide, loader, wide_sgd, nullptr,
        T::quiet_options(1, "").resume(path).config({{"lr", "0.1"}, {"dim", "16"}}));
    CHECK_THROWS_WITH(trainer.fit(), Contains("was written for another model") &&
                                         Contains("[16, 8]") && Contains("[32, 8]"));
  }
  {
    simsiam::Trainer trainer(
        model, loader, sgd, nullptr,
        T::quiet_options(1, "").resume(path).config({{"lr", "0.2"}, {"dim", "16"}}));
    CHECK_THROWS_WITH(trainer.fit(), Contains("was written with another configuration") &&
                                         Contains("lr=0.1 (now 0.2)"));
  }
}

TEST_CASE("the trainer refuses a schedule that does not span the run", "[train][trainer]") {
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 3);
  simsiam::Trainer per_step(model, loader, sgd, &schedule,
                            T::quiet_options(3, "").schedule_per_step(true));
  CHECK_THROWS_WITH(per_step.fit(),
                    Contains("the cosine schedule spans 3 positions but the run needs 9"));
  simsiam::Trainer longer(model, loader, sgd, &schedule, T::quiet_options(4, ""));
  CHECK_THROWS_WITH(longer.fit(), Contains("spans 3 positions but the run needs 4"));
  schedule.step();
  simsiam::Trainer stepped(model, loader, sgd, &schedule, T::quiet_options(3, ""));
  CHECK_THROWS_WITH(stepped.fit(), Contains("the schedule was already stepped 1 times"));
}

TEST_CASE("any LibTorch schedule is stepped once per epoch; only a Schedule is checked",
          "[train][trainer]") {
  auto model = T::tiny_model();
  auto loader = T::tiny_loader();
  auto sgd = simsiam::make_sgd(model, kRecipe);
  // StepLR halves every epoch and spans nothing in particular: a 3-epoch run takes it as it is.
  torch::optim::StepLR step_lr(sgd, /*step_size=*/1, /*gamma=*/0.5);
  struct Lrs : simsiam::Hook {
    void on_epoch_begin(simsiam::TrainState& state) override { seen.push_back(state.lrs[0]); }
    std::vector<double> seen;
  };
  auto lrs = std::make_shared<Lrs>();
  simsiam::Trainer trainer(model, loader, sgd, &step_lr, T::quiet_options(3, ""));
  trainer.add_hook(lrs);
  trainer.fit();
  // Stepped before each epoch, as the official loop steps its schedule (LibTorch's StepLR leaves
  // the lr alone at its first step).
  CHECK(lrs->seen == std::vector<double>{kRecipe.lr(), kRecipe.lr() * 0.5, kRecipe.lr() * 0.25});
  // A CosineSchedule describes itself as checkpoints record it.
  auto cosine = simsiam::make_cosine_schedule(sgd, kRecipe, 3);
  CHECK(cosine.positions() == 3);
  CHECK(cosine.description() == "cosine total 3 warmup 0 fixed {1}");
}

TEST_CASE("one process: the replicas are a no-op", "[train][trainer]") {
  const simsiam::distributed::Replicas alone;
  CHECK(alone.size() == 1);
  CHECK(alone.is_main());
  CHECK(alone.mean(0.25) == 0.25);
  CHECK(alone.any(true));
  CHECK_FALSE(alone.any(false));
  const auto agreed = alone.agree(/*has_batch=*/false, /*stop=*/true);
  CHECK(agreed.ranks_with_batch == 0);
  CHECK(agreed.stop);
  simsiam::distributed::StepReport report;
  report.bad_step = 12;
  report.bad_value = -std::numeric_limits<double>::infinity();
  report.sum = 1.5;
  const auto verdict = alone.agree(report);
  CHECK(verdict.bad_rank == 0);
  CHECK(verdict.bad_step == 12);
  CHECK(verdict.bad_value == report.bad_value);
  CHECK(verdict.sum == 1.5);
  CHECK(alone.agree(simsiam::distributed::StepReport()).bad_rank == -1);
  CHECK(alone.gather(7) == std::vector<int64_t>{7});
  auto model = T::tiny_model();
  const auto before = model->parameters()[0].clone();
  {
    auto attached = alone.attach(*model, /*sync_batch_norm=*/true, {});
    attached->synchronize_gradients();
    attached->align_buffers();
  }
  CHECK(torch::equal(model->parameters()[0], before));
  for (const auto& m : model->modules()) {
    if (auto* bn = m->as<simsiam::distributed::SyncBatchNorm>()) CHECK(bn->group == nullptr);
  }
}

TEST_CASE("a model that turns non-finite never overwrites the last good checkpoint",
          "[train][trainer][guard]") {
  struct Poison : simsiam::Hook {
    void on_epoch_end(simsiam::TrainState& state) override {
      if (state.epoch != 1) return;
      torch::NoGradGuard no_grad;
      state.model->parameters().front().fill_(std::numeric_limits<float>::infinity());
    }
  };
  T::ScratchDir dir("poison");
  CHECK_THROWS_WITH(train(dir.str(), 3, "", std::make_shared<Poison>()),
                    Contains("holds NaN or inf after epoch 2; no checkpoint written") &&
                        Contains("checkpoint.pt' (epoch 1)"));
  auto fresh = T::tiny_model(3);
  CHECK(simsiam::load_checkpoint(dir / "checkpoint.pt", *fresh, nullptr).epoch == 1);
}

TEST_CASE("the trainer runs LARS, bfloat16 autocast and channels_last on CPU", "[train][trainer]") {
  auto model = T::tiny_model();
  const auto before = model->parameters().front().detach().clone();
  auto loader = T::tiny_loader();
  simsiam::Lars lars(model->parameters(), simsiam::LarsOptions(0.5).weight_decay(1e-4));
  auto schedule = simsiam::CosineSchedule(lars, simsiam::CosineScheduleOptions(1));
  simsiam::Trainer trainer(model, loader, lars, &schedule,
                           T::quiet_options(1, "").amp(true).channels_last(true));
  const auto result = trainer.fit();
  CHECK(result.steps == 3);
  CHECK(std::isfinite(result.last_epoch.at("loss")));
  CHECK_FALSE(trainer.scaler().options.enabled());  // bfloat16 needs no loss scaling
  const auto after = model->parameters().front();
  CHECK(after.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK_FALSE(torch::equal(before, after));
}

TEST_CASE("view_transform augments both views on the device, the same way on every run",
          "[train][trainer]") {
  // Noise drawn from the step's generator: two runs agree bit for bit, and differ from a run
  // without the transform.
  const auto run = [](bool transform) {
    auto model = T::tiny_model(0);
    auto loader = T::tiny_loader();
    auto sgd = simsiam::make_sgd(model, kRecipe);
    auto schedule = simsiam::make_cosine_schedule(sgd, kRecipe, 1);
    auto options = T::quiet_options(1, "");
    int64_t calls = 0;
    if (transform) {
      options.view_transform([&calls](const torch::Tensor& views, torch::Generator& generator) {
        ++calls;
        return views + 0.5 * torch::randn(views.sizes(), generator);
      });
    }
    simsiam::Trainer trainer(model, loader, sgd, &schedule, options);
    trainer.fit();
    CHECK(calls == (transform ? 6 : 0));  // 3 steps x 2 views
    return model;
  };
  const auto first = run(true), second = run(true), plain = run(false);
  CHECK(T::identical(*first, *second));
  CHECK_FALSE(T::identical(*first, *plain));
}

TEST_CASE("cuDNN's benchmark mode is on during fit only for a CUDA device, then restored",
          "[train][trainer]") {
  auto& context = at::globalContext();
  const bool before = context.benchmarkCuDNN();
  {
    const simsiam::detail::CudnnBenchmarkScope on(true);
    CHECK(context.benchmarkCuDNN());
    {
      const simsiam::detail::CudnnBenchmarkScope off(false);
      CHECK_FALSE(context.benchmarkCuDNN());
    }
    CHECK(context.benchmarkCuDNN());
  }
  CHECK(context.benchmarkCuDNN() == before);
  // A CPU run leaves the process-wide flag as the caller set it, during the run and after.
  struct Observe : simsiam::Hook {
    std::vector<bool> seen;
    void on_step_end(simsiam::TrainState&) override {
      seen.push_back(at::globalContext().benchmarkCuDNN());
    }
  };
  for (const bool user_setting : {false, true}) {
    context.setBenchmarkCuDNN(user_setting);
    auto observe = std::make_shared<Observe>();
    train("", 1, "", observe);
    REQUIRE(observe->seen.size() == 3);
    for (const bool seen : observe->seen) CHECK(seen == user_setting);
    CHECK(context.benchmarkCuDNN() == user_setting);
  }
  context.setBenchmarkCuDNN(before);
}
