// SPDX-License-Identifier: BSD-3-Clause
// SimSiam<Backbone> against a PyTorch copy of the official builder.py + main_simsiam.py step.
#include "simsiam/model/simsiam.hpp"

#include "support/catch.hpp"

#include "simsiam/backbones/convnet.hpp"
#include "simsiam/loss/symmetric_loss.hpp"
#include "support/fixtures.hpp"

namespace {

using simsiam::testing::core_fixtures;
using simsiam::testing::det_fill;
using simsiam::testing::tensor_of;
using Model = simsiam::SimSiam<torch::nn::Sequential>;
constexpr double kTolerance = simsiam::testing::kFixtureTolerance;

/// The fixture's TinySimSiam: conv-BN-ReLU-pool backbone (4 features), dim 6, pred_dim 3.
Model tiny_model() {
  torch::nn::Sequential backbone(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(false)),
      torch::nn::BatchNorm2d(4), torch::nn::ReLU(), torch::nn::AdaptiveAvgPool2d(1),
      torch::nn::Flatten());
  Model model(backbone, simsiam::SimSiamOptions().feature_dim(4).dim(6).pred_dim(3));
  model->to(torch::kDouble);  // the fixture is float64 (see make_core_fixtures.py)
  simsiam::testing::fill_named(*model);
  return model;
}

void check_against_fixture(const std::string& name, bool stop_gradient) {
  INFO("case " << name);
  const auto& expected = core_fixtures().at("model").at(name);
  auto model = tiny_model();
  model->train();
  const auto x1 = det_fill({4, 3, 5, 5}, 0.3, 1.0);
  const auto x2 = det_fill({4, 3, 5, 5}, 0.9, 1.0);
  const auto out = model->forward(x1, x2);
  CHECK(out.z1.requires_grad());  // z as computed: the loss alone applies the stop-gradient
  const auto loss = simsiam::functional::symmetric_loss(
      out.p1, out.p2, out.z1, out.z2, simsiam::SymmetricLossOptions().stop_gradient(stop_gradient));
  CHECK(loss.item<double>() == Approx(expected.at("loss").get<double>()).margin(kTolerance));
  CHECK_TENSOR_NEAR(out.p1, tensor_of(expected.at("p1")), kTolerance);
  CHECK_TENSOR_NEAR(out.p2, tensor_of(expected.at("p2")), kTolerance);
  CHECK_TENSOR_NEAR(out.z1, tensor_of(expected.at("z1")), kTolerance);
  CHECK_TENSOR_NEAR(out.z2, tensor_of(expected.at("z2")), kTolerance);
  loss.backward();
  const auto& grads = expected.at("grads");
  size_t with_grad = 0;
  for (const auto& p : model->named_parameters()) {
    INFO("parameter " << p.key());
    if (!grads.contains(p.key())) {  // frozen: projector.6.bias
      CHECK_FALSE(p.value().grad().defined());
      continue;
    }
    ++with_grad;
    CHECK_TENSOR_NEAR(p.value().grad(), tensor_of(grads.at(p.key())), kTolerance);
  }
  CHECK(with_grad == grads.size());
  for (const auto& b : model->named_buffers()) {
    INFO("buffer " << b.key());
    CHECK_TENSOR_NEAR(b.value().to(torch::kDouble), tensor_of(expected.at("buffers").at(b.key())),
                      kTolerance);
  }
}

}  // namespace

TEST_CASE("model outputs, loss, every gradient and BN statistics match PyTorch", "[model]") {
  check_against_fixture("stop_gradient", true);
}

TEST_CASE("without stop-gradient the model matches PyTorch's collapsing variant", "[model]") {
  check_against_fixture("no_stop_gradient", false);
}

TEST_CASE("with stop-gradient, dL/dz flows only through the predictor", "[model]") {
  for (const bool stop_gradient : {true, false}) {
    INFO("stop_gradient " << stop_gradient);
    auto model = tiny_model();
    const auto x1 = det_fill({4, 3, 5, 5}, 0.3, 1.0);
    const auto x2 = det_fill({4, 3, 5, 5}, 0.9, 1.0);
    auto z1 = model->encode(x1);
    auto z2 = model->encode(x2);
    z1.retain_grad();
    z2.retain_grad();
    auto p1 = model->predictor()->forward(z1);
    auto p2 = model->predictor()->forward(z2);
    p1.retain_grad();
    p2.retain_grad();
    const auto loss = simsiam::functional::symmetric_loss(
        p1, p2, z1, z2, simsiam::SymmetricLossOptions().stop_gradient(stop_gradient));
    loss.backward({}, /*retain_graph=*/true);
    // Read before autograd::grad: LibTorch 2.x runs retain_grad hooks of its inputs there too,
    // adding the product below to z1.grad() a second time.
    const auto grad_z1 = z1.grad().clone();
    const auto grad_z2 = z2.grad().clone();
    // The part of dL/dz1 that comes through p1 = h(z1): a vector-Jacobian product of h.
    const auto via_p1 = torch::autograd::grad({p1}, {z1}, {p1.grad()}, /*retain_graph=*/true)[0];
    const auto direct = grad_z1 - via_p1;
    if (stop_gradient) {
      CHECK(direct.abs().max().item<double>() < 1e-15);
    } else {
      CHECK(direct.abs().max().item<double>() > 1e-3);  // the target branch carries gradient too
    }
    const auto& expected =
        core_fixtures().at("model").at(stop_gradient ? "stop_gradient" : "no_stop_gradient");
    CHECK_TENSOR_NEAR(grad_z1, tensor_of(expected.at("grad_z1")), kTolerance);
    CHECK_TENSOR_NEAR(grad_z2, tensor_of(expected.at("grad_z2")), kTolerance);
  }
}

TEST_CASE("the two views go through separate passes (per-view BN statistics)", "[model]") {
  auto model = tiny_model();
  const auto x1 = det_fill({4, 3, 5, 5}, 0.3, 1.0);
  const auto x2 = 3.0 * det_fill({4, 3, 5, 5}, 0.9, 1.0);
  const auto out = model->forward(x1, x2);
  const auto alone = model->encode(x1);
  CHECK(torch::allclose(out.z1, alone, 0.0, 1e-12));
  const auto joint = model->encode(torch::cat({x1, x2})).slice(0, 0, 4);
  CHECK_FALSE(torch::allclose(out.z1, joint, 0.0, 1e-3));
}

TEST_CASE("parameter groups split encoder and predictor", "[model]") {
  simsiam::SimSiam<simsiam::ConvNet> model(
      simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({8, 16})),
      simsiam::SimSiamOptions().dim(32).pred_dim(8));
  CHECK(model->projector()->options.in_features() == 16);  // asked the backbone's feature_dim()
  const auto encoder = model->encoder_parameters();
  const auto predictor = model->predictor_parameters();
  CHECK(encoder.size() + predictor.size() == model->parameters().size());
  CHECK(predictor.size() == 5);
  CHECK(predictor[0].data_ptr() == model->predictor()->parameters()[0].data_ptr());
  const auto names = model->named_parameters().keys();
  CHECK(std::count_if(names.begin(), names.end(), [](const std::string& n) {
          return n.rfind("backbone.", 0) == 0;
        }) == static_cast<long>(model->backbone()->parameters().size()));
  const auto out = model->forward(torch::randn({6, 1, 12, 12}), torch::randn({6, 1, 12, 12}));
  CHECK(out.p1.sizes() == torch::IntArrayRef({6, 32}));
  CHECK(out.z2.sizes() == torch::IntArrayRef({6, 32}));
}

TEST_CASE("model errors name what was expected", "[model][errors]") {
  torch::nn::Sequential no_dim{torch::nn::Flatten()};
  CHECK_THROWS_WITH((simsiam::SimSiam<torch::nn::Sequential>(no_dim)),
                    Contains("the backbone has no feature_dim(); set "
                             "SimSiamOptions().feature_dim("));
  auto model = tiny_model();
  CHECK_THROWS_WITH(model->forward(torch::randn({4, 3, 5, 5}, torch::kDouble),
                                   torch::randn({2, 3, 5, 5}, torch::kDouble)),
                    Contains("expected two views of one shape, got x1 [4, 3, 5, 5] and "
                             "x2 [2, 3, 5, 5]"));
  CHECK_THROWS_WITH(
      (Model(torch::nn::Sequential(torch::nn::Flatten()),
             simsiam::Projector(simsiam::ProjectorOptions(4).out_features(6)),
             simsiam::Predictor(simsiam::PredictorOptions(8)))),
      Contains("expected the predictor to map the projector's output width 6 to itself, "
               "got 8 -> 8"));
}
