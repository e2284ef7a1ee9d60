// SPDX-License-Identifier: BSD-3-Clause
// Mixed precision: the autocast guard's scope, and the gradient scaler's skip/backoff/growth,
// which follow torch.cuda.amp.GradScaler.
#include "simsiam/train/amp.hpp"

#include <limits>

#include "support/catch.hpp"

TEST_CASE("AutocastGuard casts matmuls to bfloat16 on CPU within its scope only", "[train][amp]") {
  const auto a = torch::randn({4, 4}), b = torch::randn({4, 4});
  {
    simsiam::AutocastGuard guard(torch::kCPU, true, torch::kBFloat16);
    CHECK(a.matmul(b).scalar_type() == torch::kBFloat16);
    {
      simsiam::AutocastGuard off(torch::kCPU, false, torch::kBFloat16);  // disabled: no change
      CHECK(a.matmul(b).scalar_type() == torch::kBFloat16);
    }
  }
  CHECK(a.matmul(b).scalar_type() == torch::kFloat);
  CHECK_THROWS_WITH(simsiam::AutocastGuard(torch::kMeta, true, torch::kHalf),
                    Contains("expected a CPU or CUDA device"));
}

TEST_CASE("GradScaler unscales, skips steps with inf gradients, backs off and grows",
          "[train][amp]") {
  auto w = torch::ones({2}, torch::requires_grad());
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.5));
  simsiam::GradScaler scaler(simsiam::GradScalerOptions().init_scale(1024).growth_interval(2));
  const auto loss = (w * torch::tensor({1.0f, 2.0f})).sum();
  const auto scaled = scaler.scale(loss);
  CHECK(scaled.item<float>() == 3.0f * 1024);
  scaled.backward();
  CHECK(scaler.step(sgd));
  CHECK(torch::allclose(w, torch::tensor({0.5f, 0.0f})));  // 1 - 0.5 * (1, 2): unscaled grads
  scaler.update();
  CHECK(scaler.current_scale() == 1024);

  w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 1.0f});
  const auto before = w.detach().clone();
  CHECK_FALSE(scaler.step(sgd));
  CHECK(torch::equal(w, before));  // skipped
  scaler.update();
  CHECK(scaler.current_scale() == 512);  // backoff 0.5

  for (int i = 0; i < 2; ++i) {
    w.mutable_grad() = torch::ones({2});
    CHECK(scaler.step(sgd));
    scaler.update();
  }
  CHECK(scaler.current_scale() == 1024);  // growth 2 after growth_interval clean steps

  simsiam::GradScaler restored;
  restored.load_state(scaler.state());
  CHECK(restored.current_scale() == 1024);
  simsiam::GradScaler off(simsiam::GradScalerOptions().enabled(false));
  CHECK(off.scale(loss).item<float>() == 3.0f);
}

TEST_CASE("GradScaler unscales each device and dtype group, sees NaN, and never grows to inf",
          "[train][amp]") {
  // Two dtypes make two groups (one fused check-and-unscale each where LibTorch has it).
  auto a = torch::ones({3}, torch::requires_grad());
  auto b = torch::ones({2}, torch::dtype(torch::kDouble).requires_grad(true));
  torch::optim::SGD sgd({a, b}, torch::optim::SGDOptions(1.0));
  simsiam::GradScaler scaler(simsiam::GradScalerOptions().init_scale(8).growth_interval(1));
  const auto loss =
      (a * torch::tensor({1.0f, 2.0f, 3.0f})).sum() + (b * 4.0).sum().to(torch::kFloat);
  scaler.scale(loss).backward();
  CHECK(scaler.step(sgd));
  CHECK(torch::equal(a, torch::tensor({0.0f, -1.0f, -2.0f})));  // exact: 8 is a power of two
  CHECK(torch::equal(b, torch::full({2}, -3.0, torch::kDouble)));
  scaler.update();
  CHECK(scaler.current_scale() == 16);  // growth after 1 clean step
  CHECK(torch::equal(scaler.state(), torch::tensor({16.0, 0.0}, torch::kDouble)));

  // A NaN in the second group alone skips the step for both.
  a.mutable_grad() = torch::ones({3});
  b.mutable_grad() = torch::tensor({1.0, std::nan("")}, torch::kDouble);
  const auto a_before = a.detach().clone(), b_before = b.detach().clone();
  CHECK_FALSE(scaler.step(sgd));
  CHECK(torch::equal(a, a_before));
  CHECK(torch::equal(b.isnan(), b_before.isnan()));
  scaler.update();
  CHECK(scaler.current_scale() == 8);

  // torch.amp's rule: a growth that would overflow float32 keeps the scale.
  simsiam::GradScaler big(simsiam::GradScalerOptions().init_scale(3e38).growth_interval(1));
  auto w = torch::ones({1}, torch::requires_grad());
  torch::optim::SGD plain({w}, torch::optim::SGDOptions(0.0));
  big.scale(w.sum() * 1e-38).backward();
  CHECK(big.step(plain));
  big.update();
  CHECK(big.current_scale() == static_cast<double>(3e38f));
  CHECK_THROWS_WITH(simsiam::GradScaler().step(plain), Contains("step() before scale(loss)"));
}
