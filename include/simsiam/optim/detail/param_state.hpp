// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Internal: the key of a parameter in a LibTorch optimiser's state map, which differs
/// between LibTorch versions.
#pragma once

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace simsiam::detail {

/// The key of `p` in an optimiser state map of type `StateMap`: LibTorch 1.x keys the map by the
/// TensorImpl address as text ("0x55...", as its own optimisers write it), 2.x by the address.
template <class StateMap>
typename StateMap::key_type param_state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream key;  // c10::guts::to_string, which LibTorch 2.2 removed
    key << static_cast<const void*>(p.unsafeGetTensorImpl());
    return key.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

}  // namespace simsiam::detail
