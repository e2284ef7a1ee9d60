// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief The projection MLP that ends the encoder f (backbone + projector), giving z.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "simsiam/heads/detail/mlp.hpp"

namespace simsiam {

/// Options of `Projector`; the defaults are the official ImageNet head (`builder.py`).
struct ProjectorOptions {
  /// `in_features` is the backbone's feature width (2048 for ResNet-50, 512 for ResNet-18).
  /* implicit */ ProjectorOptions(int64_t in_features) : in_features_(in_features) {}

  /// Width of the backbone features fed in.
  TORCH_ARG(int64_t, in_features);
  /// Width of the hidden layers; unset means `in_features`, as the official code does.
  TORCH_ARG(std::optional<int64_t>, hidden_features) = std::nullopt;
  /// Output dimension d (paper Table 6: 2048 best).
  TORCH_ARG(int64_t, out_features) = 2048;
  /// Number of Linear layers: 3 for ImageNet, 2 for the CIFAR variant (paper Appendix A).
  TORCH_ARG(int64_t, num_layers) = 3;
  /// BatchNorm after each hidden Linear (paper Table 2).
  TORCH_ARG(bool, hidden_batch_norm) = true;
  /// BatchNorm1d(affine=false) on the output, with the last Linear's bias frozen.
  TORCH_ARG(bool, output_batch_norm) = true;
};

/// Projection MLP: [Linear(bias=false) BN ReLU] x (num_layers-1), Linear, BN(affine=false).
/// Child names follow the official `nn.Sequential` ("0".."7"), so `encoder.fc.<i>.*` of an
/// official checkpoint maps to `projector.<i>.*`.
class ProjectorImpl : public detail::MlpHead<ProjectorImpl> {
 public:
  explicit ProjectorImpl(ProjectorOptions options) : options(std::move(options)) { reset(); }

  /// The options the projector was built with.
  ProjectorOptions options;

  /// The layer widths and switches these options describe.
  detail::MlpSpec spec() const {
    return {"simsiam::Projector",
            options.in_features(),
            options.hidden_features().value_or(options.in_features()),
            options.out_features(),
            options.num_layers(),
            options.hidden_batch_norm(),
            options.output_batch_norm()};
  }
};

/// Holder of `ProjectorImpl`.
TORCH_MODULE(Projector);

}  // namespace simsiam
