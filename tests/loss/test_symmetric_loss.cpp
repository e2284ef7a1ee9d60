// SPDX-License-Identifier: BSD-3-Clause
// SimSiam loss against PyTorch (official main_simsiam.py criterion) and the paper's ablations.
#include "simsiam/loss/symmetric_loss.hpp"

#include "support/catch.hpp"

#include "support/fixtures.hpp"

namespace {

using simsiam::testing::core_fixtures;
using simsiam::testing::tensor_of;

struct Inputs {
  torch::Tensor p1, p2, z1, z2;
};

Inputs fixture_inputs() {
  const auto& in = core_fixtures().at("loss").at("inputs");
  return {tensor_of(in.at("p1")).requires_grad_(), tensor_of(in.at("p2")).requires_grad_(),
          tensor_of(in.at("z1")).requires_grad_(), tensor_of(in.at("z2")).requires_grad_()};
}

/// Checks the loss value and the gradient of every input against the fixture `name`.
void check_case(const std::string& name, const Inputs& in, const torch::Tensor& loss) {
  const auto& expected = core_fixtures().at("loss").at(name);
  INFO("case " << name);
  CHECK(loss.item<double>() ==
        Approx(expected.at("loss").get<double>()).margin(simsiam::testing::kFixtureTolerance));
  loss.backward();
  const std::pair<const char*, torch::Tensor> inputs[] = {
      {"grad_p1", in.p1}, {"grad_p2", in.p2}, {"grad_z1", in.z1}, {"grad_z2", in.z2}};
  for (const auto& [key, tensor] : inputs) {
    INFO(key);
    const auto grad = tensor.grad().defined() ? tensor.grad() : torch::zeros_like(tensor);
    CHECK_TENSOR_NEAR(grad, tensor_of(expected.at(key)), simsiam::testing::kFixtureTolerance);
  }
}

}  // namespace

TEST_CASE("default loss equals the official criterion and its gradients", "[loss]") {
  auto in = fixture_inputs();
  check_case("cosine_symmetric", in,
             simsiam::functional::symmetric_loss(in.p1, in.p2, in.z1, in.z2));
}

TEST_CASE("module form equals the functional form", "[loss]") {
  auto in = fixture_inputs();
  simsiam::SymmetricLoss<> loss;
  check_case("cosine_symmetric", in, loss(in.p1, in.p2, in.z1, in.z2));
}

TEST_CASE("stop_gradient(false) lets gradients reach the targets", "[loss]") {
  auto in = fixture_inputs();
  const auto options = simsiam::SymmetricLossOptions().stop_gradient(false);
  check_case("cosine_no_stop_gradient", in,
             simsiam::functional::symmetric_loss(in.p1, in.p2, in.z1, in.z2, options));
}

TEST_CASE("asymmetric form is D(p1, stopgrad(z2)) and ignores p2, z1", "[loss]") {
  auto in = fixture_inputs();
  const auto options = simsiam::SymmetricLossOptions().form(simsiam::LossForm::kAsymmetric);
  check_case(
      "cosine_asymmetric", in,
      simsiam::functional::symmetric_loss(in.p1, torch::Tensor(), torch::Tensor(), in.z2, options));
  CHECK(simsiam::functional::asymmetric_loss(in.p1, in.z2).item<double>() ==
        Approx(core_fixtures()["loss"]["cosine_asymmetric"]["loss"].get<double>())
            .margin(simsiam::testing::kFixtureTolerance));
}

TEST_CASE("asymmetric x2 averages the asymmetric loss of two pairs", "[loss]") {
  auto in = fixture_inputs();
  const auto x2 = simsiam::functional::asymmetric_x2_loss(in.p1, in.z2, in.p2, in.z1);
  const auto by_hand = 0.5 * (simsiam::functional::asymmetric_loss(in.p1, in.z2) +
                              simsiam::functional::asymmetric_loss(in.p2, in.z1));
  CHECK(x2.item<double>() == Approx(by_hand.item<double>()).margin(1e-12));
  // Each pair's target is detached: the gradient reaches the predictions only.
  x2.backward();
  CHECK(in.p1.grad().defined());
  CHECK(in.p2.grad().defined());
  CHECK_FALSE(in.z1.grad().defined());
  CHECK_FALSE(in.z2.grad().defined());
  CHECK_THROWS_WITH(
      simsiam::functional::asymmetric_x2_loss(in.p1, in.z2, in.p2.narrow(0, 0, 2), in.z1),
      Contains("simsiam::asymmetric_x2_loss: expected p_b and z_b to have the same shape"));
}

TEST_CASE("softmax cross-entropy equals the paper's variant", "[loss]") {
  auto in = fixture_inputs();
  check_case("cross_entropy_symmetric", in,
             simsiam::functional::symmetric_loss(in.p1, in.p2, in.z1, in.z2, {},
                                                 simsiam::SoftmaxCrossEntropy{}));
  auto again = fixture_inputs();
  simsiam::SymmetricLoss<simsiam::SoftmaxCrossEntropy> loss(
      simsiam::SymmetricLossOptions().stop_gradient(false));
  check_case("cross_entropy_no_stop_gradient", again, loss(again.p1, again.p2, again.z1, again.z2));
}

TEST_CASE("loss is -1 exactly when predictions align with targets", "[loss]") {
  const auto z = torch::randn({8, 16});
  const auto loss = simsiam::functional::symmetric_loss(3.0 * z, 2.0 * z, z, z);
  CHECK(loss.item<double>() == Approx(-1.0).margin(1e-6));
}

TEST_CASE("loss in float32 agrees with the float64 reference within 1e-5", "[loss]") {
  auto in = fixture_inputs();
  const auto as_float = [](const torch::Tensor& t) {
    return t.detach().to(torch::kFloat).requires_grad_();
  };
  Inputs f{as_float(in.p1), as_float(in.p2), as_float(in.z1), as_float(in.z2)};
  const auto loss = simsiam::functional::symmetric_loss(f.p1, f.p2, f.z1, f.z2);
  CHECK(loss.scalar_type() == torch::kFloat);
  const auto& expected = core_fixtures()["loss"]["cosine_symmetric"];
  CHECK(loss.item<double>() == Approx(expected["loss"].get<double>()).margin(1e-5));
  loss.backward();
  CHECK_TENSOR_NEAR(f.p1.grad(), tensor_of(expected["grad_p1"]), 1e-5);
  CHECK_TENSOR_NEAR(f.p2.grad(), tensor_of(expected["grad_p2"]), 1e-5);
}

TEST_CASE("bad loss inputs name both shapes", "[loss][errors]") {
  using simsiam::functional::symmetric_loss;
  const auto a = torch::randn({4, 8});
  CHECK_THROWS_WITH(symmetric_loss(a, a, a, torch::randn({4, 6})),
                    Contains("expected p1 and z2 to have the same shape, got p1 [4, 8] and "
                             "z2 [4, 6]"));
  CHECK_THROWS_WITH(symmetric_loss(a, a, a, torch::randn({4, 8, 1})),
                    Contains("expected p1 and z2 to be 2-D [B, D] tensors, got p1 [4, 8] "
                             "and z2 [4, 8, 1]"));
  const auto empty = torch::randn({0, 8});
  CHECK_THROWS_WITH(symmetric_loss(empty, empty, empty, empty),
                    Contains("expected a non-empty batch, got p1 [0, 8] and z2 [0, 8]"));
  CHECK_THROWS_WITH(symmetric_loss(a, torch::randn({3, 8}), torch::randn({3, 8}), a),
                    Contains("p1 [4, 8] and p2 [3, 8]"));
  CHECK_THROWS_WITH(symmetric_loss(a, torch::Tensor(), a, a),
                    Contains("got p2 undefined and z1 [4, 8]"));
}
