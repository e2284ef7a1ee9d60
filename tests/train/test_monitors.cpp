// SPDX-License-Identifier: BSD-3-Clause
// CollapseMonitor on collapsed and healthy models; KnnMonitor on a problem with a known answer.
#include "simsiam/train/monitors.hpp"

#include <numeric>
#include <vector>

#include "support/catch.hpp"

#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

namespace {

/// Feeds the monitor `steps` steps of the model's z on one batch.
void feed(simsiam::CollapseMonitor& monitor, T::TinyModel& model, const torch::Tensor& x,
          int64_t steps, simsiam::TrainState& state) {
  torch::NoGradGuard no_grad;
  monitor.on_epoch_begin(state);
  for (int64_t i = 0; i < steps && !state.stop; ++i) {
    state.global_step = i + 1;
    state.z1 = model->encode(x);
    monitor.on_step_end(state);
  }
}

}  // namespace

TEST_CASE("the collapse monitor fires on a collapsed model and not on a healthy one",
          "[train][monitor][collapse]") {
  const auto x = torch::randn({32, 1, 12, 12});
  const auto options = simsiam::CollapseMonitorOptions().patience(5).stop(true).every(1);
  {
    auto healthy = T::tiny_model();
    simsiam::CollapseMonitor monitor(options);
    simsiam::TrainState state;
    feed(monitor, healthy, x, 20, state);
    CHECK_FALSE(monitor.fired());
    CHECK_FALSE(state.stop);
    // Random outputs spread over the sphere: about 1/sqrt(16).
    CHECK(state.step_metrics.at("collapse_std") == Approx(0.25).epsilon(0.2));
  }
  {
    // Zero backbone weights: every image gets the same z (the collapsed solution of Fig. 2).
    auto collapsed = T::tiny_model();
    torch::NoGradGuard no_grad;
    for (auto& p : collapsed->backbone()->parameters()) p.zero_();
    simsiam::CollapseMonitor monitor(options);
    simsiam::TrainState state;
    feed(monitor, collapsed, x, 20, state);
    CHECK(monitor.fired());
    CHECK(state.stop);
    CHECK(state.global_step == 5);  // after exactly `patience` steps under the threshold
    CHECK_THAT(state.stop_reason, Contains("collapse") && Contains("for 5 steps"));
    CHECK(state.epoch_metrics.at("collapse_std") == Approx(0.0).margin(1e-6));
  }
  {
    // Without `stop` it only warns.
    auto collapsed = T::tiny_model();
    torch::NoGradGuard no_grad;
    for (auto& p : collapsed->backbone()->parameters()) p.zero_();
    simsiam::CollapseMonitor monitor(simsiam::CollapseMonitorOptions().patience(5).every(1));
    simsiam::TrainState state;
    feed(monitor, collapsed, x, 8, state);
    CHECK(monitor.fired());
    CHECK_FALSE(state.stop);
  }
  CHECK_THROWS_WITH(simsiam::CollapseMonitor(simsiam::CollapseMonitorOptions().patience(0)),
                    Contains("patience > 0"));
}

TEST_CASE("the collapse monitor reads the device every N steps with the same statistics",
          "[train][monitor][collapse]") {
  const auto x = torch::randn({32, 1, 12, 12});
  auto model = T::tiny_model();
  // Ten steps of different z: the per-step values, read one by one.
  std::vector<torch::Tensor> zs;
  std::vector<double> values;
  double sum = 0.0;
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 10; ++i) {
      zs.push_back(model->encode(x * (1.0 + 0.1 * i) + 0.05 * i));
      values.push_back(simsiam::functional::collapse_std(zs.back()).item<double>());
      sum += values.back();
    }
  }
  simsiam::CollapseMonitor monitor(simsiam::CollapseMonitorOptions().every(4));
  simsiam::TrainState state;
  monitor.on_epoch_begin(state);
  for (int64_t step = 1; step <= 10; ++step) {
    state.step_metrics.clear();
    state.global_step = step;
    state.z1 = zs[static_cast<size_t>(step - 1)];
    monitor.on_step_end(state);
    if (step % 4 == 0) {
      CHECK(state.step_metrics.at("collapse_std") == values[static_cast<size_t>(step - 1)]);
      CHECK(state.epoch_metrics.at("collapse_std") ==
            std::accumulate(values.begin(), values.begin() + step, 0.0) /
                static_cast<double>(step));
    } else {
      CHECK(state.step_metrics.count("collapse_std") == 0);  // not read at this step
    }
  }
  monitor.on_epoch_end(state);  // reads steps 9 and 10
  CHECK(state.epoch_metrics.at("collapse_std") == sum / 10);

  // A collapse is seen at the next read, and named at the step where patience ran out.
  auto collapsed = T::tiny_model();
  torch::NoGradGuard no_grad;
  for (auto& p : collapsed->backbone()->parameters()) p.zero_();
  simsiam::CollapseMonitor late(simsiam::CollapseMonitorOptions().patience(5).stop(true).every(4));
  simsiam::TrainState collapsing;
  feed(late, collapsed, x, 20, collapsing);
  CHECK(collapsing.stop);
  CHECK(collapsing.global_step == 8);
  CHECK_THAT(collapsing.stop_reason, Contains("for 5 steps") && Contains("step 5"));
  CHECK_THROWS_WITH(simsiam::CollapseMonitor(simsiam::CollapseMonitorOptions().every(0)),
                    Contains("every > 0"));
}

TEST_CASE("the kNN monitor reports the known accuracy of a toy problem", "[train][monitor][knn]") {
  // Identity "network" on 2-D points: class c sits around angle c * 90 degrees; queries 0-5
  // are near their class, query 6 of class 0 sits on class 1's side, so the answer is 6/7.
  struct Identity : torch::nn::Module {};
  Identity identity;
  const auto angles = torch::tensor({0.0, 0.05, -0.05, 1.571, 1.52, 1.62, 3.14, 3.10, 3.18});
  const auto bank = torch::stack({angles.cos(), angles.sin()}, 1).to(torch::kFloat);
  const auto bank_labels = torch::tensor({0L, 0L, 0L, 1L, 1L, 1L, 2L, 2L, 2L});
  const auto query_angles = torch::tensor({0.1, -0.1, 1.6, 1.55, 3.0, 3.2, 1.5});
  const auto queries = torch::stack({query_angles.cos(), query_angles.sin()}, 1).to(torch::kFloat);
  const auto query_labels = torch::tensor({0L, 0L, 1L, 1L, 2L, 2L, 0L});
  simsiam::KnnMonitor monitor(
      bank, bank_labels, queries, query_labels, 3,
      simsiam::KnnMonitorOptions().every(2).knn(simsiam::KnnOptions().k(3).temperature(0.1)));
  simsiam::TrainState state;
  state.model = &identity;
  state.features = [](const torch::Tensor& x) { return x; };
  state.epochs = 5;
  state.epoch = 0;  // 1 epoch done: not a multiple of 2
  monitor.on_epoch_end(state);
  CHECK(state.epoch_metrics.count("knn_top1") == 0);
  state.epoch = 1;
  monitor.on_epoch_end(state);
  CHECK(state.epoch_metrics.at("knn_top1") == Approx(6.0 / 7.0));
  state.epoch_metrics.clear();
  state.epoch = 4;  // the last epoch is always evaluated
  monitor.on_epoch_end(state);
  CHECK(state.epoch_metrics.at("knn_top1") == Approx(6.0 / 7.0));
}
