// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The prediction MLP h, which maps z of one view to p, a guess of the other view's z.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "simsiam/heads/detail/mlp.hpp"

namespace simsiam {

/// Options of `Predictor`; the defaults are the official bottleneck head (`builder.py`).
struct PredictorOptions {
  /// `in_features` is the projector's output dimension d.
  /* implicit */ PredictorOptions(int64_t in_features = 2048) : in_features_(in_features) {}

  /// Width of z (the projector's output).
  TORCH_ARG(int64_t, in_features);
  /// Bottleneck width: 512 = d/4 (paper Sec. 3, "the hidden layer's dimension is 512").
  TORCH_ARG(int64_t, hidden_features) = 512;
  /// Output width; unset means `in_features` (p and z must have one shape).
  TORCH_ARG(std::optional<int64_t>, out_features) = std::nullopt;
  /// Number of Linear layers (2 in the paper).
  TORCH_ARG(int64_t, num_layers) = 2;
  /// BatchNorm after the hidden Linear (paper Table 2).
  TORCH_ARG(bool, hidden_batch_norm) = true;
  /// BatchNorm on the output: off in the paper, whose Table 2 shows training is unstable with it.
  TORCH_ARG(bool, output_batch_norm) = false;
};

/// Prediction MLP: Linear(bias=false) BN ReLU, Linear (with bias, no BN, no ReLU on the output).
/// Child names follow the official `nn.Sequential` ("0".."3").
class PredictorImpl : public detail::MlpHead<PredictorImpl> {
 public:
  explicit PredictorImpl(PredictorOptions options = {}) : options(std::move(options)) { reset(); }

  /// The options the predictor was built with.
  PredictorOptions options;

  /// The layer widths and switches these options describe.
  detail::MlpSpec spec() const {
    return {"simsiam::Predictor",       options.in_features(),
            options.hidden_features(),  options.out_features().value_or(options.in_features()),
            options.num_layers(),       options.hidden_batch_norm(),
            options.output_batch_norm()};
  }
};

/// Holder of `PredictorImpl`.
TORCH_MODULE(Predictor);

}  // namespace simsiam
