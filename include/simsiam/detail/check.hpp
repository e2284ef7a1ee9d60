// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal helpers that format shapes and options for error messages.
#pragma once

#include <torch/torch.h>

#include <sstream>
#include <string>

namespace simsiam::detail {

/// "[4, 2048]" for a defined tensor, "undefined" otherwise: error messages name shapes this way.
inline std::string shape_string(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

/// Fails unless `a` and `b` are defined 2-D [B, D] tensors of one shape with B > 0.
inline void check_pair(const char* where, const char* a_name, const torch::Tensor& a,
                       const char* b_name, const torch::Tensor& b) {
  TORCH_CHECK(a.defined() && b.defined(), where, ": expected ", a_name, " and ", b_name,
              " to be defined [B, D] tensors, got ", a_name, " ", shape_string(a), " and ", b_name,
              " ", shape_string(b));
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, where, ": expected ", a_name, " and ", b_name,
              " to be 2-D [B, D] tensors, got ", a_name, " ", shape_string(a), " and ", b_name, " ",
              shape_string(b));
  TORCH_CHECK(a.sizes() == b.sizes(), where, ": expected ", a_name, " and ", b_name,
              " to have the same shape, got ", a_name, " ", shape_string(a), " and ", b_name, " ",
              shape_string(b));
  TORCH_CHECK(a.size(0) > 0 && a.size(1) > 0, where, ": expected a non-empty batch, got ", a_name,
              " ", shape_string(a), " and ", b_name, " ", shape_string(b));
}

}  // namespace simsiam::detail
