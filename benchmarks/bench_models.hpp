// SPDX-License-Identifier: BSD-3-Clause
// Networks shared by the benchmark programs.
#pragma once

#include <simsiam/backbones/convnet.hpp>
#include <simsiam/loss/symmetric_loss.hpp>
#include <simsiam/model/simsiam.hpp>

/// The quick start's network: ConvNet 8-16-32-64, d 512, predictor 512-128-512, 2-layer
/// projector; the same initial weights every time.
inline simsiam::SimSiam<simsiam::ConvNet> quick_start_model() {
  torch::manual_seed(0);
  simsiam::ConvNet backbone(simsiam::ConvNetOptions(1).widths({8, 16, 32, 64}));
  return simsiam::SimSiam<simsiam::ConvNet>(
      backbone, simsiam::SimSiamOptions().dim(512).pred_dim(128).projector_layers(2));
}

/// The official training step on two fixed views: two forward passes, the symmetric loss,
/// zero_grad, backward, `after_backward()` (gradient averaging, or nothing), the SGD step.
template <class Model, class AfterBackward>
torch::Tensor training_step(Model& model, torch::optim::SGD& sgd,
                            simsiam::SymmetricLoss<>& criterion, const torch::Tensor& x1,
                            const torch::Tensor& x2, AfterBackward&& after_backward) {
  const auto out = model->forward(x1, x2);
  auto loss = criterion(out.p1, out.p2, out.z1, out.z2);
  sgd.zero_grad();
  loss.backward();
  after_backward();
  sgd.step();
  return loss;
}
