// SPDX-License-Identifier: BSD-3-Clause
// LARS against a hand computation of apex LARC(SGD, trust_coefficient=0.001, clip=False), the
// optimiser of main_lincls.py.
#include "simsiam/optim/lars.hpp"

#include <cmath>
#include <sstream>

#include "support/catch.hpp"

namespace {

/// One LARC step by hand on a 2-vector: returns the new weights and updates `buffer`.
std::pair<double, double> larc_step(double w0, double w1, double g0, double g1, double lr,
                                    double momentum, double wd, double trust_coefficient, bool clip,
                                    std::pair<double, double>& buffer, bool first) {
  const double w_norm = std::sqrt(w0 * w0 + w1 * w1), g_norm = std::sqrt(g0 * g0 + g1 * g1);
  double d0 = g0, d1 = g1;
  if (w_norm != 0 && g_norm != 0) {
    double trust = trust_coefficient * w_norm / (g_norm + w_norm * wd + 1e-8);
    if (clip) trust = std::min(trust / lr, 1.0);
    d0 = (g0 + wd * w0) * trust;
    d1 = (g1 + wd * w1) * trust;
  }
  buffer = first ? std::make_pair(d0, d1)
                 : std::make_pair(momentum * buffer.first + d0, momentum * buffer.second + d1);
  return {w0 - lr * buffer.first, w1 - lr * buffer.second};
}

}  // namespace

TEST_CASE("a LARS update equals the hand computation of LARC over momentum SGD", "[optim][lars]") {
  for (const bool clip : {false, true}) {
    INFO("clip " << clip);
    auto w = torch::tensor({3.0, 4.0}, torch::kDouble).requires_grad_();
    simsiam::Lars lars({w}, simsiam::LarsOptions(0.5).momentum(0.9).weight_decay(0.1).clip(clip));
    std::pair<double, double> buffer;
    double w0 = 3.0, w1 = 4.0;
    const double grads[3][2] = {{0.6, 0.8}, {-0.3, 0.2}, {1.5, -2.0}};
    for (int step = 0; step < 3; ++step) {
      w.mutable_grad() = torch::tensor({grads[step][0], grads[step][1]}, torch::kDouble);
      lars.step();
      std::tie(w0, w1) = larc_step(w0, w1, grads[step][0], grads[step][1], 0.5, 0.9, 0.1, 0.001,
                                   clip, buffer, step == 0);
      CHECK(w[0].item<double>() == Approx(w0).epsilon(1e-12));
      CHECK(w[1].item<double>() == Approx(w1).epsilon(1e-12));
    }
  }
  // The first step by hand: ||w|| = 5, ||g|| = 1, trust = 0.001 * 5 / (1 + 0.1 * 5) = 1/300,
  // update = ((0.6, 0.8) + 0.1 (3, 4)) / 300 = (0.003, 0.004), w = (3, 4) - 0.5 (0.003, 0.004).
  auto w = torch::tensor({3.0, 4.0}, torch::kDouble).requires_grad_();
  simsiam::Lars lars({w}, simsiam::LarsOptions(0.5).weight_decay(0.1));
  w.mutable_grad() = torch::tensor({0.6, 0.8}, torch::kDouble);
  lars.step();
  CHECK(w[0].item<double>() == Approx(2.9985).epsilon(1e-9));
  CHECK(w[1].item<double>() == Approx(3.998).epsilon(1e-9));
}

TEST_CASE("LARS leaves zero-norm parameters unscaled and undecayed, as LARC", "[optim][lars]") {
  // A zero-initialised bias: ||w|| = 0, so LARC applies neither the trust ratio nor the decay.
  auto bias = torch::zeros({2}, torch::kDouble).requires_grad_();
  simsiam::Lars lars({bias}, simsiam::LarsOptions(1.6).weight_decay(0.1));
  bias.mutable_grad() = torch::tensor({1.0, -2.0}, torch::kDouble);
  lars.step();
  CHECK(torch::allclose(bias, torch::tensor({-1.6, 3.2}, torch::kDouble)));
}

TEST_CASE("excluded 1-D parameters follow plain momentum SGD", "[optim][lars]") {
  auto weight = torch::randn({3, 2}, torch::kDouble).requires_grad_();
  auto bias = torch::randn({3}, torch::kDouble).requires_grad_();
  auto reference = bias.detach().clone().requires_grad_();
  const auto options = simsiam::LarsOptions(0.3).momentum(0.9).weight_decay(0.01);
  auto groups = simsiam::lars_param_groups({weight, bias}, options, /*exclude_bias_and_norm=*/true);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].params().size() == 1);
  CHECK_FALSE(static_cast<const simsiam::LarsOptions&>(groups[1].options()).adapt());
  simsiam::Lars lars(std::move(groups), options);
  torch::optim::SGD sgd({reference},
                        torch::optim::SGDOptions(0.3).momentum(0.9).weight_decay(0.01));
  for (int step = 0; step < 3; ++step) {
    const auto grad = torch::randn({3}, torch::kDouble);
    bias.mutable_grad() = grad.clone();
    reference.mutable_grad() = grad.clone();
    weight.mutable_grad() = torch::randn({3, 2}, torch::kDouble);
    lars.step();
    sgd.step();
  }
  CHECK(torch::allclose(bias, reference, 1e-12, 1e-12));
  CHECK(simsiam::lars_param_groups({weight, bias}, options, false).size() == 1);
}

TEST_CASE("LARS momentum buffers survive save and load", "[optim][lars]") {
  auto w = torch::tensor({1.0, 2.0}, torch::kDouble).requires_grad_();
  auto copy = w.detach().clone().requires_grad_();
  simsiam::Lars lars({w}, simsiam::LarsOptions(0.5).weight_decay(0.01));
  w.mutable_grad() = torch::tensor({0.1, -0.2}, torch::kDouble);
  lars.step();
  {
    torch::NoGradGuard no_grad;
    copy.copy_(w);
  }
  std::stringstream stream;
  torch::save(lars, stream);
  simsiam::Lars restored({copy}, simsiam::LarsOptions(0.5).weight_decay(0.01));
  torch::load(restored, stream);
  w.mutable_grad() = torch::tensor({0.3, 0.1}, torch::kDouble);
  copy.mutable_grad() = torch::tensor({0.3, 0.1}, torch::kDouble);
  lars.step();
  restored.step();
  CHECK(torch::equal(w, copy));
  CHECK_THROWS_WITH(simsiam::Lars({w}, simsiam::LarsOptions(-1)), Contains("expected lr >= 0"));
}
