/// @file
/// @brief Checkpoints: weights, optimiser state (momentum buffers), training position, RNG and
/// other state tensors and the run's configuration, in one LibTorch archive written atomically.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace simsiam {

/// The settings of a run as name -> value text. A checkpoint records them, and resuming refuses
/// one whose recorded settings differ (e.g. another --dim, --lr or --batch-size).
using RunConfig = std::map<std::string, std::string>;

/// Everything in a checkpoint besides the module and the optimiser.
struct CheckpointState {
  int64_t epoch = 0;           ///< epochs completed
  int64_t step = 0;            ///< optimiser steps completed
  int64_t schedule_steps = 0;  ///< `LRScheduler::step()` calls made
  RunConfig config;
  /// Named state tensors: RNG states ("rng/cpu"), the gradient scaler, user additions.
  std::map<std::string, torch::Tensor> tensors;
};

namespace detail {

constexpr const char* kCheckpointFormat = "simsiam++ checkpoint 1";

/// One line per parameter and buffer: "name [shape] dtype". Two modules load each other's
/// weights exactly when their signatures are equal.
inline std::vector<std::string> module_signature(const torch::nn::Module& module) {
  std::vector<std::string> lines;
  auto add = [&](const std::string& kind, const std::string& name, const torch::Tensor& t) {
    std::ostringstream line;
    line << kind << " " << name << " " << t.sizes() << " " << t.scalar_type();
    lines.push_back(line.str());
  };
  for (const auto& item : module.named_parameters()) add("parameter", item.key(), item.value());
  for (const auto& item : module.named_buffers()) add("buffer", item.key(), item.value());
  return lines;
}

inline c10::List<std::string> to_list(const std::vector<std::string>& strings) {
  c10::List<std::string> list;
  for (const auto& s : strings) list.push_back(s);
  return list;
}

inline std::vector<std::string> read_strings(torch::serialize::InputArchive& archive,
                                             const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  std::vector<std::string> out;
  const auto list = value.toList();
  for (size_t i = 0; i < list.size(); ++i) out.push_back(list.get(i).toStringRef());
  return out;
}

inline int64_t read_int(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  return value.toInt();
}

}  // namespace detail

/// Writes a checkpoint of `model`, `optimizer` (may be null) and `state` to `path`: first to
/// `path + ".tmp"`, then renamed over `path`, so an interrupted write never leaves a torn file and
/// the previous checkpoint stays valid until the new one is complete.
inline void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                            const torch::optim::Optimizer* optimizer,
                            const CheckpointState& state) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(detail::kCheckpointFormat)));
  archive.write("signature", c10::IValue(detail::to_list(detail::module_signature(model))));
  std::vector<std::string> keys, values;
  for (const auto& [key, value] : state.config) {
    keys.push_back(key);
    values.push_back(value);
  }
  archive.write("config/keys", c10::IValue(detail::to_list(keys)));
  archive.write("config/values", c10::IValue(detail::to_list(values)));
  archive.write("epoch", c10::IValue(state.epoch));
  archive.write("step", c10::IValue(state.step));
  archive.write("schedule_steps", c10::IValue(state.schedule_steps));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : state.tensors) {
    names.push_back(name);
    archive.write("tensors/" + name, tensor.cpu(), /*is_buffer=*/true);
  }
  archive.write("tensors", c10::IValue(detail::to_list(names)));
  torch::serialize::OutputArchive model_archive(archive.compilation_unit());
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive optimizer_archive(archive.compilation_unit());
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  const std::string temporary = path + ".tmp";
  try {
    archive.save_to(temporary);
  } catch (const c10::Error& e) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    TORCH_CHECK(false, "simsiam::save_checkpoint: cannot write '", temporary, "' (",
                e.what_without_backtrace(), ")");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  TORCH_CHECK(!error, "simsiam::save_checkpoint: cannot rename '", temporary, "' to '", path,
              "': ", error.message());
}

/// Reads a checkpoint written by `save_checkpoint` into `model` and `optimizer` (may be null)
/// and returns the rest. Refuses, naming the first difference, a checkpoint whose parameters
/// and buffers (names, shapes, dtypes) differ from `model`'s, or whose configuration differs
/// from `expected_config` when one is given; those checks run before anything is loaded.
/// Tensors are mapped to `device` (that of the model's parameters) when given.
inline CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer* optimizer,
                                       const RunConfig* expected_config = nullptr,
                                       std::optional<torch::Device> device = std::nullopt) {
  constexpr const char* kWhere = "simsiam::load_checkpoint";
  TORCH_CHECK(std::filesystem::is_regular_file(path), kWhere, ": no checkpoint file '", path, "'");
  torch::serialize::InputArchive archive;
  c10::IValue format;
  try {
    c10::optional<torch::Device> map_location;
    if (device) map_location = *device;
    archive.load_from(path, map_location);
    archive.read("format", format);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, kWhere, ": '", path,
                "' is not a readable SimSiam++ checkpoint (truncated or corrupt?): ",
                e.what_without_backtrace());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, kWhere, ": '", path, "' is not a SimSiam++ checkpoint: ", e.what());
  }
  TORCH_CHECK(format.isString() && format.toStringRef() == detail::kCheckpointFormat, kWhere, ": '",
              path, "' is not a SimSiam++ checkpoint (expected format '", detail::kCheckpointFormat,
              "')");

  const auto saved = detail::read_strings(archive, "signature");
  const auto current = detail::module_signature(model);
  for (size_t i = 0; i < std::max(saved.size(), current.size()); ++i) {
    const std::string was = i < saved.size() ? saved[i] : "(nothing)";
    const std::string is = i < current.size() ? current[i] : "(nothing)";
    TORCH_CHECK(was == is, kWhere, ": '", path, "' was written for another model: its entry ", i,
                " is '", was, "' where this model has '", is, "'");
  }

  CheckpointState state;
  const auto keys = detail::read_strings(archive, "config/keys");
  const auto values = detail::read_strings(archive, "config/values");
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) state.config[keys[i]] = values[i];
  if (expected_config != nullptr) {
    std::ostringstream differences;
    auto lookup = [](const RunConfig& config, const std::string& key) {
      const auto it = config.find(key);
      return it == config.end() ? std::string("(unset)") : it->second;
    };
    RunConfig all = state.config;
    all.insert(expected_config->begin(), expected_config->end());
    for (const auto& item : all) {
      const auto was = lookup(state.config, item.first), is = lookup(*expected_config, item.first);
      if (was != is) differences << " " << item.first << "=" << was << " (now " << is << ")";
    }
    TORCH_CHECK(differences.str().empty(), kWhere, ": '", path,
                "' was written with another configuration:", differences.str());
  }
  state.epoch = detail::read_int(archive, "epoch");
  state.step = detail::read_int(archive, "step");
  state.schedule_steps = detail::read_int(archive, "schedule_steps");
  for (const auto& name : detail::read_strings(archive, "tensors")) {
    torch::Tensor tensor;
    archive.read("tensors/" + name, tensor, /*is_buffer=*/true);
    state.tensors[name] = tensor;
  }
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
  if (optimizer != nullptr) {
    torch::serialize::InputArchive optimizer_archive;
    TORCH_CHECK(archive.try_read("optimizer", optimizer_archive), kWhere, ": '", path,
                "' holds no optimiser state");
    try {
      optimizer->load(optimizer_archive);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, kWhere, ": the optimiser state in '", path,
                  "' does not fit this optimiser (another optimiser or parameter groups?): ",
                  e.what_without_backtrace());
    }
  }
  return state;
}

}  // namespace simsiam
