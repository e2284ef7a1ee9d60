// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Linear evaluation on frozen features (main_lincls.py's protocol): a new fc initialised
/// N(0, 0.01) with zero bias, trained with LARS (or SGD) under a cosine schedule, reporting
/// top-1 and top-5.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "simsiam/detail/check.hpp"
#include "simsiam/optim/cosine_schedule.hpp"
#include "simsiam/optim/lars.hpp"

namespace simsiam {

/// The optimiser of a linear probe.
enum class ProbeOptimizer {
  kLars,  ///< official: LARS (trust 0.001, no clipping) over momentum SGD
  kSgd,   ///< the paper's SGD alternative (lr 30 at batch 256 on ImageNet)
};

/// Options of `linear_probe`; the defaults are main_lincls.py's.
struct LinearProbeOptions {
  TORCH_ARG(int64_t, epochs) = 90;
  TORCH_ARG(int64_t, batch_size) = 4096;
  /// Scaled by batch / 256: 0.1 x 4096 / 256 = 1.6 officially.
  TORCH_ARG(double, base_lr) = 0.1;
  TORCH_ARG(double, momentum) = 0.9;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(ProbeOptimizer, optimizer) = ProbeOptimizer::kLars;
  /// Seeds the order of the training features.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Accuracy and the trained classifier.
struct LinearProbeResult {
  double top1 = 0.0, top5 = 0.0;  ///< in [0, 1] on the test features
  torch::nn::Linear classifier{nullptr};
};

/// A linear classifier as main_lincls.py initialises it: weights N(0, 0.01), bias 0.
inline torch::nn::Linear make_linear_classifier(int64_t in_features, int64_t num_classes) {
  TORCH_CHECK(in_features > 0 && num_classes > 0,
              "simsiam::make_linear_classifier: expected in_features > 0 and num_classes > 0, "
              "got ",
              in_features, " and ", num_classes);
  torch::nn::Linear fc(in_features, num_classes);
  torch::NoGradGuard no_grad;
  fc->weight.normal_(0.0, 0.01);
  fc->bias.zero_();
  return fc;
}

/// The fraction of rows whose label is among the k highest logits (k capped at the classes).
inline double topk_accuracy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t k) {
  TORCH_CHECK(logits.defined() && logits.dim() == 2 && labels.defined() && labels.dim() == 1 &&
                  labels.size(0) == logits.size(0) && logits.size(0) > 0,
              "simsiam::topk_accuracy: expected logits [N, C] and labels [N] with N > 0, got ",
              detail::shape_string(logits), " and ", detail::shape_string(labels));
  TORCH_CHECK(k > 0, "simsiam::topk_accuracy: expected k > 0, got ", k);
  torch::NoGradGuard no_grad;
  const auto top = std::get<1>(logits.topk(std::min(k, logits.size(1)), /*dim=*/1));
  return top.eq(labels.to(top.device(), torch::kLong).unsqueeze(1))
      .any(1)
      .to(torch::kDouble)
      .mean()
      .item<double>();
}

/// Trains a linear classifier on frozen training features [N, D] (e.g. `extract_features` of the
/// backbone in eval mode) with cross-entropy, then measures top-1/top-5 on the test features.
/// Runs where the features are. The official protocol also augments the training images
/// (RandomResizedCrop + flip) through the frozen backbone; on precomputed features each image
/// is seen as one fixed view.
inline LinearProbeResult linear_probe(const torch::Tensor& train_features,
                                      const torch::Tensor& train_labels,
                                      const torch::Tensor& test_features,
                                      const torch::Tensor& test_labels, int64_t num_classes,
                                      const LinearProbeOptions& options = {}) {
  constexpr const char* kWhere = "simsiam::linear_probe";
  TORCH_CHECK(train_features.defined() && train_features.dim() == 2 && train_features.size(0) > 0 &&
                  test_features.defined() && test_features.dim() == 2 &&
                  test_features.size(1) == train_features.size(1),
              kWhere, ": expected train [N, D] and test [M, D] features, got ",
              detail::shape_string(train_features), " and ", detail::shape_string(test_features));
  TORCH_CHECK(train_labels.defined() && train_labels.dim() == 1 &&
                  train_labels.size(0) == train_features.size(0) && test_labels.defined() &&
                  test_labels.dim() == 1 && test_labels.size(0) == test_features.size(0),
              kWhere, ": expected one label per feature row, got ",
              detail::shape_string(train_labels), " and ", detail::shape_string(test_labels));
  TORCH_CHECK(options.epochs() > 0 && options.batch_size() > 0 && options.base_lr() > 0 &&
                  options.momentum() >= 0 && options.weight_decay() >= 0,
              kWhere,
              ": expected epochs > 0, batch_size > 0, base_lr > 0, momentum >= 0 and "
              "weight_decay >= 0, got epochs ",
              options.epochs(), ", batch_size ", options.batch_size(), ", base_lr ",
              options.base_lr(), ", momentum ", options.momentum(), ", weight_decay ",
              options.weight_decay());
  const auto device = train_features.device();
  const auto x_train = train_features.detach().to(torch::kFloat);
  const auto y_train = train_labels.to(device, torch::kLong);
  TORCH_CHECK(y_train.min().item<int64_t>() >= 0 && y_train.max().item<int64_t>() < num_classes,
              kWhere, ": expected labels in [0, ", num_classes, ")");

  auto fc = make_linear_classifier(x_train.size(1), num_classes);
  fc->to(device);
  const double lr =
      options.base_lr() * static_cast<double>(options.batch_size()) / 256.0;  // main_lincls.py
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (options.optimizer() == ProbeOptimizer::kLars) {
    optimizer = std::make_unique<Lars>(
        fc->parameters(),
        LarsOptions(lr).momentum(options.momentum()).weight_decay(options.weight_decay()));
  } else {
    optimizer = std::make_unique<torch::optim::SGD>(fc->parameters(),
                                                    torch::optim::SGDOptions(lr)
                                                        .momentum(options.momentum())
                                                        .weight_decay(options.weight_decay()));
  }
  CosineSchedule schedule(*optimizer, CosineScheduleOptions(options.epochs()));
  auto generator = at::detail::createCPUGenerator(options.seed());
  const int64_t n = x_train.size(0);
  for (int64_t epoch = 0; epoch < options.epochs(); ++epoch) {
    schedule.step();
    const auto order = torch::randperm(n, generator, torch::kLong).to(device);
    for (int64_t start = 0; start < n; start += options.batch_size()) {
      const auto index = order.slice(0, start, std::min(n, start + options.batch_size()));
      const auto loss = torch::nn::functional::cross_entropy(
          fc->forward(x_train.index_select(0, index)), y_train.index_select(0, index));
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();
    }
  }
  torch::NoGradGuard no_grad;
  const auto logits = fc->forward(test_features.detach().to(device, torch::kFloat));
  LinearProbeResult result;
  result.top1 = topk_accuracy(logits, test_labels, 1);
  result.top5 = topk_accuracy(logits, test_labels, 5);
  result.classifier = fc;
  return result;
}

}  // namespace simsiam
