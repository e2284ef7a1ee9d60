// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Weights to and from PyTorch: the official facebookresearch/simsiam checkpoints
/// (`checkpoint_0099.pth.tar`) into a `SimSiam` model, and backbones in torchvision's state-dict
/// format, written for `torchvision.models.resnet50().load_state_dict(torch.load(path),
/// strict=False)` and read back.
///
/// Names map as the official builder.py lays the model out: `module.encoder.fc.<i>.*` (the
/// projector replaced torchvision's fc) -> `projector.<i>.*`, `module.encoder.*` -> `backbone.*`,
/// `module.predictor.*` -> `predictor.*`. The backbones already use torchvision's names.
#pragma once

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "simsiam/detail/file.hpp"
#include "simsiam/detail/pickle.hpp"

namespace simsiam {

/// What `load_official_checkpoint` found besides the weights.
struct OfficialCheckpoint {
  int64_t epoch = -1;   ///< "epoch" of main_simsiam.py (epochs done), -1 when absent
  std::string arch;     ///< "arch", e.g. "resnet50"
  int64_t tensors = 0;  ///< parameters and buffers loaded
};

namespace detail {

/// The official checkpoint's name of a `SimSiam` parameter or buffer, or "" if it has none.
inline std::string simsiam_name_from_official(const std::string& key) {
  std::string name = key.rfind("module.", 0) == 0 ? key.substr(7) : key;  // DistributedDataParallel
  if (name.rfind("encoder.fc.", 0) == 0) return "projector." + name.substr(11);
  if (name.rfind("encoder.", 0) == 0) return "backbone." + name.substr(8);
  if (name.rfind("predictor.", 0) == 0) return name;
  return "";
}

inline std::string join_first(const std::vector<std::string>& names, size_t most = 5) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < most; ++i) text += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > most) text += " and " + std::to_string(names.size() - most) + " more";
  return text;
}

/// Copies `state` (name -> tensor, names already translated) into `module`'s parameters and
/// buffers, checking shapes; every tensor of `module` must be given unless `optional(name)`, and
/// every given name must exist. Nothing is copied unless all checks pass.
inline int64_t load_named_tensors(torch::nn::Module& module,
                                  const std::vector<std::pair<std::string, torch::Tensor>>& state,
                                  const std::string& path,
                                  const std::function<bool(const std::string&)>& optional) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : module.named_parameters()) targets.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers()) targets.emplace(item.key(), item.value());
  std::vector<std::string> unexpected, missing;
  std::set<std::string> given;
  for (const auto& [name, tensor] : state) {
    const auto it = targets.find(name);
    if (it == targets.end()) {
      unexpected.push_back(name);
      continue;
    }
    given.insert(name);
    TORCH_CHECK(it->second.sizes() == tensor.sizes(), "simsiam: '", path, "' gives '", name,
                "' the shape ", tensor.sizes(), ", the model expects ", it->second.sizes());
  }
  for (const auto& [name, tensor] : targets) {
    if (!given.count(name) && !optional(name)) missing.push_back(name);
  }
  TORCH_CHECK(unexpected.empty(), "simsiam: '", path, "' holds ", unexpected.size(),
              " tensors the model does not have: ", join_first(unexpected),
              " (another architecture or layout?)");
  TORCH_CHECK(missing.empty(), "simsiam: '", path, "' lacks ", missing.size(),
              " tensors of the model: ", join_first(missing));
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : state) {
    auto& target = targets.at(name);
    target.copy_(tensor.to(target.device(), target.scalar_type()));
  }
  return static_cast<int64_t>(state.size());
}

/// The "state_dict" entry of a torch.save'd dict, or the dict itself when it holds tensors.
inline c10::impl::GenericDict state_dict_of(const c10::IValue& value, const std::string& path) {
  TORCH_CHECK(value.isGenericDict(), "simsiam: '", path, "' holds a ", value.tagKind(),
              ", expected a dict (a state dict, or a checkpoint with 'state_dict')");
  const auto dict = value.toGenericDict();
  const auto it = dict.find(c10::IValue(std::string("state_dict")));
  if (it != dict.end()) {
    TORCH_CHECK(it->value().isGenericDict(), "simsiam: '", path,
                "' has a 'state_dict' that is not a dict");
    return it->value().toGenericDict();
  }
  return dict;
}

}  // namespace detail

/// Loads an official SimSiam checkpoint (main_simsiam.py's `checkpoint_XXXX.pth.tar`, written
/// by torch.save with `state_dict` keys `module.encoder.*` and `module.predictor.*`) into
/// `model`, a `SimSiam` with the same backbone, dim and pred_dim; every parameter and buffer must
/// be there with its shape, and nothing else. The optimiser state in the file is not used.
inline OfficialCheckpoint load_official_checkpoint(const std::string& path,
                                                   torch::nn::Module& model) {
  const auto file = detail::read_torch_save(path);
  const auto dict = detail::state_dict_of(file, path);
  std::vector<std::pair<std::string, torch::Tensor>> state;
  std::vector<std::string> foreign;
  for (const auto& entry : dict) {
    const auto& key = entry.key().toStringRef();
    TORCH_CHECK(entry.value().isTensor(), "simsiam: '", path, "': state_dict entry '", key,
                "' is not a tensor");
    const auto name = detail::simsiam_name_from_official(key);
    if (name.empty()) {
      foreign.push_back(key);
    } else {
      state.emplace_back(name, entry.value().toTensor());
    }
  }
  TORCH_CHECK(foreign.empty(), "simsiam: '", path, "' is not an official SimSiam checkpoint: ",
              "expected state_dict keys 'module.encoder.*' and 'module.predictor.*', got ",
              detail::join_first(foreign));
  OfficialCheckpoint result;
  result.tensors =
      detail::load_named_tensors(model, state, path, [](const std::string&) { return false; });
  if (file.isGenericDict()) {
    const auto top = file.toGenericDict();
    if (const auto it = top.find(c10::IValue(std::string("epoch")));
        it != top.end() && it->value().isInt()) {
      result.epoch = it->value().toInt();
    }
    if (const auto it = top.find(c10::IValue(std::string("arch")));
        it != top.end() && it->value().isString()) {
      result.arch = it->value().toStringRef();
    }
  }
  return result;
}

/// Writes `backbone`'s parameters and buffers under torchvision's names as a state dict that
/// Python reads with torch.load (temporary file, then rename). A `ResNet` gives what
/// `torchvision.models.resnet50().load_state_dict(state, strict=False)` loads with only fc
/// missing.
inline void save_torchvision_backbone(const torch::nn::Module& backbone, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& item : backbone.named_parameters()) {
    state.insert(item.key(), item.value().detach().cpu().contiguous());
  }
  for (const auto& item : backbone.named_buffers()) {
    state.insert(item.key(), item.value().cpu().contiguous());
  }
  // torch::pickle_save would wrap the dict in torch.jit._pickle.restore_type_tag, which
  // torch.load(weights_only=True), PyTorch's default since 2.6, refuses: pickle it untagged.
  std::string pickle;
  torch::jit::Pickler pickler([&](const char* data, size_t size) { pickle.append(data, size); },
                              nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(c10::IValue(state));
  pickler.stop();
  std::string archive;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      archive.append(static_cast<const char*>(data), size);
      return size;
    });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(),
                                       writer);
    writer.writeEndOfFile();
  }
  detail::write_file_atomically(archive, path, "simsiam::save_torchvision_backbone");
}

/// Loads a torchvision-named backbone state dict written by torch.save (a plain state dict, or
/// a checkpoint with 'state_dict'; the keys of main_lincls.py's pretrained loading,
/// `module.encoder.*` without `fc`, are accepted too). fc is ignored; every other tensor of
/// `backbone` must be there.
inline int64_t load_torchvision_backbone(torch::nn::Module& backbone, const std::string& path) {
  const auto dict = detail::state_dict_of(detail::read_torch_save(path), path);
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& entry : dict) {
    std::string key = entry.key().toStringRef();
    if (key.rfind("module.encoder.", 0) == 0) key = key.substr(15);
    if (key.rfind("module.predictor.", 0) == 0 || key.rfind("fc.", 0) == 0) continue;
    TORCH_CHECK(entry.value().isTensor(), "simsiam: '", path, "': entry '", key,
                "' is not a tensor");
    state.emplace_back(key, entry.value().toTensor());
  }
  return detail::load_named_tensors(
      backbone, state, path, [](const std::string& name) { return name.rfind("fc.", 0) == 0; });
}

}  // namespace simsiam
