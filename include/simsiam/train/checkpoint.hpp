// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Checkpoints: weights, optimiser state (momentum buffers), training position, RNG and
/// other state tensors and the run's configuration, in one file that carries a checksum, is
/// written durably and atomically, and reads back on any LibTorch version (1.13 and 2.x).
///
/// The file is a 32-byte header (magic, payload length, CRC-32C of the payload, CRC-32C of the
/// header) followed by a LibTorch archive. The optimiser state is stored in the library's own
/// layout, keyed by the parameter's index within its group: LibTorch's own optimiser archives key
/// it by memory addresses, which LibTorch 2.x cannot map back from files written by 1.x.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "simsiam/detail/crc32c.hpp"
#include "simsiam/detail/file.hpp"
#include "simsiam/optim/detail/param_state.hpp"
#include "simsiam/optim/lars.hpp"

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

/// Lets checkpoints hold the state of an optimiser type of your own, `OptimizerT`, whose
/// per-parameter state is `StateT` (an `OptimizerParamState` with `serialize`). LibTorch's
/// optimisers (SGD, Adam, AdamW, Adagrad, RMSprop, LBFGS) and `Lars` are known already. Call it
/// once, before saving or loading.
template <class OptimizerT, class StateT>
void register_optimizer_state();

namespace detail {

/// The payload's format; resuming needs this one exactly.
constexpr const char* kCheckpointFormat = "simsiam++ checkpoint 2";
/// The first version's format: a bare LibTorch archive whose optimiser state LibTorch keyed by
/// memory address. Its weights are still readable.
constexpr const char* kCheckpointFormatV1 = "simsiam++ checkpoint 1";
/// The file header: magic (16 bytes), payload length (8), payload CRC-32C (4), header CRC-32C
/// of the 28 bytes before it (4); integers little-endian.
constexpr char kCheckpointMagic[17] = "SIMSIAM++ CKPT 2";
constexpr size_t kCheckpointHeaderBytes = 32;

/// How to make an empty per-parameter state of an optimiser type, to read saved state into.
struct OptimizerStateType {
  std::function<bool(const torch::optim::Optimizer&)> matches;
  std::function<std::unique_ptr<torch::optim::OptimizerParamState>()> make;
};

template <class OptimizerT, class StateT>
OptimizerStateType optimizer_state_type() {
  return {[](const torch::optim::Optimizer& o) { return dynamic_cast<const OptimizerT*>(&o); },
          [] { return std::make_unique<StateT>(); }};
}

struct OptimizerStateRegistry {
  std::mutex mutex;
  std::vector<OptimizerStateType> types{
      optimizer_state_type<torch::optim::SGD, torch::optim::SGDParamState>(),
      optimizer_state_type<torch::optim::Adam, torch::optim::AdamParamState>(),
      optimizer_state_type<torch::optim::AdamW, torch::optim::AdamWParamState>(),
      optimizer_state_type<torch::optim::Adagrad, torch::optim::AdagradParamState>(),
      optimizer_state_type<torch::optim::RMSprop, torch::optim::RMSpropParamState>(),
      optimizer_state_type<torch::optim::LBFGS, torch::optim::LBFGSParamState>(),
      optimizer_state_type<Lars, torch::optim::SGDParamState>()};
};

inline OptimizerStateRegistry& optimizer_state_registry() {
  static OptimizerStateRegistry registry;
  return registry;
}

/// The maker of `optimizer`'s per-parameter states, or an empty function for unknown types.
inline std::function<std::unique_ptr<torch::optim::OptimizerParamState>()> param_state_maker(
    const torch::optim::Optimizer& optimizer) {
  auto& registry = optimizer_state_registry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  // The latest registration wins, so a user type deriving from SGD can bring its own state.
  for (auto it = registry.types.rbegin(); it != registry.types.rend(); ++it) {
    if (it->matches(optimizer)) return it->make;
  }
  return {};
}

inline std::string type_name(const torch::optim::Optimizer& optimizer) {
  return c10::demangle(typeid(optimizer).name());
}

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

inline std::string shape_text(const torch::Tensor& t) {
  std::ostringstream text;
  text << t.sizes();
  return text.str();
}

/// The optimiser in the library's own layout: its type; per group g the options
/// ("group/g/options"), the parameter shapes, and the state of parameter i ("group/g/state/i")
/// for each i listed in "group/g/with_state".
inline void write_optimizer(torch::serialize::OutputArchive& archive,
                            const torch::optim::Optimizer& optimizer) {
  archive.write("type", c10::IValue(type_name(optimizer)));
  const auto& groups = optimizer.param_groups();
  archive.write("groups", c10::IValue(static_cast<int64_t>(groups.size())));
  const auto& state = optimizer.state();
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string prefix = "group/" + std::to_string(g) + "/";
    torch::serialize::OutputArchive options(archive.compilation_unit());
    groups[g].options().serialize(options);
    archive.write(prefix + "options", options);
    std::vector<std::string> shapes;
    c10::List<int64_t> with_state;
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      shapes.push_back(shape_text(params[i]));
      const auto it = state.find(param_state_key<std::decay_t<decltype(state)>>(params[i]));
      if (it == state.end()) continue;
      torch::serialize::OutputArchive entry(archive.compilation_unit());
      it->second->serialize(entry);
      archive.write(prefix + "state/" + std::to_string(i), entry);
      with_state.push_back(static_cast<int64_t>(i));
    }
    archive.write(prefix + "shapes", c10::IValue(to_list(shapes)));
    archive.write(prefix + "with_state", c10::IValue(with_state));
  }
}

/// Reads what `write_optimizer` wrote into `optimizer`, after checking that it fits (type,
/// groups, parameter shapes); nothing changes when it does not.
inline void read_optimizer(torch::serialize::InputArchive& archive,
                           torch::optim::Optimizer& optimizer, const std::string& path) {
  constexpr const char* kWhere = "simsiam::load_checkpoint";
  c10::IValue type;
  archive.read("type", type);
  TORCH_CHECK(type.toStringRef() == type_name(optimizer), kWhere, ": '", path,
              "' holds the state of a ", type.toStringRef(), ", not of this ",
              type_name(optimizer));
  auto& groups = optimizer.param_groups();
  const int64_t saved_groups = read_int(archive, "groups");
  TORCH_CHECK(saved_groups == static_cast<int64_t>(groups.size()), kWhere,
              ": the optimiser state in '", path, "' does not fit this optimiser: it has ",
              saved_groups, " parameter groups, this optimiser ", groups.size());
  const auto make = param_state_maker(optimizer);
  // Read everything first; the optimiser changes only once all of it fits.
  std::vector<std::pair<torch::Tensor, std::unique_ptr<torch::optim::OptimizerParamState>>> states;
  std::vector<torch::serialize::InputArchive> options(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string prefix = "group/" + std::to_string(g) + "/";
    const auto shapes = read_strings(archive, prefix + "shapes");
    const auto& params = groups[g].params();
    TORCH_CHECK(shapes.size() == params.size(), kWhere, ": the optimiser state in '", path,
                "' does not fit this optimiser: its group ", g, " has ", shapes.size(),
                " parameters, this optimiser's ", params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      TORCH_CHECK(shapes[i] == shape_text(params[i]), kWhere, ": the optimiser state in '", path,
                  "' does not fit this optimiser: parameter ", i, " of group ", g, " was ",
                  shapes[i], ", here it is ", shape_text(params[i]));
    }
    archive.read(prefix + "options", options[g]);
    c10::IValue with_state;
    archive.read(prefix + "with_state", with_state);
    for (const int64_t i : with_state.toIntList()) {
      TORCH_CHECK(i >= 0 && i < static_cast<int64_t>(params.size()), kWhere, ": '", path,
                  "' holds optimiser state for parameter ", i, " of group ", g, ", which has ",
                  params.size());
      TORCH_CHECK(make, kWhere, ": cannot restore the state of a ", type_name(optimizer),
                  "; call simsiam::register_optimizer_state<", type_name(optimizer),
                  ", ItsParamState>() first");
      torch::serialize::InputArchive entry;
      archive.read(prefix + "state/" + std::to_string(i), entry);
      auto param_state = make();
      param_state->serialize(entry);
      states.emplace_back(params[static_cast<size_t>(i)], std::move(param_state));
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().serialize(options[g]);
  auto& state = optimizer.state();
  state.clear();
  for (auto& [param, param_state] : states) {
    state[param_state_key<std::decay_t<decltype(state)>>(param)] = std::move(param_state);
  }
}

inline void put_le(std::string& bytes, size_t at, uint64_t value, int count) {
  for (int i = 0; i < count; ++i) bytes[at + i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}
inline uint64_t get_le(const std::string& bytes, size_t at, int count) {
  uint64_t value = 0;
  for (int i = 0; i < count; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  }
  return value;
}

/// The checkpoint file's bytes: header, then the payload archive.
inline std::string checkpoint_bytes(const torch::nn::Module& model,
                                    const torch::optim::Optimizer* optimizer,
                                    const CheckpointState& state) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
  archive.write("signature", c10::IValue(to_list(module_signature(model))));
  std::vector<std::string> keys, values;
  for (const auto& [key, value] : state.config) {
    keys.push_back(key);
    values.push_back(value);
  }
  archive.write("config/keys", c10::IValue(to_list(keys)));
  archive.write("config/values", c10::IValue(to_list(values)));
  archive.write("epoch", c10::IValue(state.epoch));
  archive.write("step", c10::IValue(state.step));
  archive.write("schedule_steps", c10::IValue(state.schedule_steps));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : state.tensors) {
    names.push_back(name);
    archive.write("tensors/" + name, tensor.cpu(), /*is_buffer=*/true);
  }
  archive.write("tensors", c10::IValue(to_list(names)));
  torch::serialize::OutputArchive model_archive(archive.compilation_unit());
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive optimizer_archive(archive.compilation_unit());
    write_optimizer(optimizer_archive, *optimizer);
    archive.write("optimizer", optimizer_archive);
  }
  std::string bytes(kCheckpointHeaderBytes, '\0');
  archive.save_to([&](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  const size_t payload = bytes.size() - kCheckpointHeaderBytes;
  std::memcpy(&bytes[0], kCheckpointMagic, 16);
  put_le(bytes, 16, payload, 8);
  put_le(bytes, 24, crc32c(bytes.data() + kCheckpointHeaderBytes, payload), 4);
  put_le(bytes, 28, crc32c(bytes.data(), 28), 4);
  return bytes;
}

/// Checks the header and checksum of a checkpoint file's bytes; the reason it is damaged, or
/// "" when it is whole.
inline std::string checkpoint_damage(const std::string& bytes) {
  if (bytes.size() < kCheckpointHeaderBytes) {
    return "it is " + std::to_string(bytes.size()) + " bytes long, shorter than its header";
  }
  if (get_le(bytes, 28, 4) != crc32c(bytes.data(), 28)) return "its header is damaged";
  const uint64_t payload = get_le(bytes, 16, 8);
  if (bytes.size() - kCheckpointHeaderBytes != payload) {
    return "it holds " + std::to_string(bytes.size() - kCheckpointHeaderBytes) +
           " bytes of payload where its header promises " + std::to_string(payload) +
           " (truncated?)";
  }
  if (get_le(bytes, 24, 4) != crc32c(bytes.data() + kCheckpointHeaderBytes, payload)) {
    return "its checksum does not match its contents (a damaged disk or copy)";
  }
  return "";
}

}  // namespace detail

template <class OptimizerT, class StateT>
void register_optimizer_state() {
  auto& registry = detail::optimizer_state_registry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  registry.types.push_back(detail::optimizer_state_type<OptimizerT, StateT>());
}

/// Writes a checkpoint of `model`, `optimizer` (may be null) and `state` to `path`, durably and
/// atomically (`path.tmp`, fsync, rename, fsync of the folder): an interrupted write never
/// leaves a torn file and the previous checkpoint stays valid until the new one is complete.
inline void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                            const torch::optim::Optimizer* optimizer,
                            const CheckpointState& state) {
  detail::write_file_atomically(detail::checkpoint_bytes(model, optimizer, state), path,
                                "simsiam::save_checkpoint");
}

/// Why the checkpoint at `path` cannot be used (missing, truncated, a flipped byte, not a
/// checkpoint), or "" when its checksum verifies. Reads the whole file; loads nothing.
inline std::string verify_checkpoint(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) return "no such file";
  std::string bytes;
  try {
    bytes = detail::read_file_bytes(path, "simsiam::verify_checkpoint");
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  if (bytes.compare(0, 16, detail::kCheckpointMagic) != 0) {
    return bytes.compare(0, 2, "PK") == 0
               ? "it is a bare LibTorch archive, not a checkpoint of this version"
               : "it is not a SimSiam++ checkpoint";
  }
  return detail::checkpoint_damage(bytes);
}

namespace detail {

inline constexpr const char* kLoadWhere = "simsiam::load_checkpoint";

/// The archive of the checkpoint at `path`, its checksum and format checked; tensors mapped to
/// `device` when given. A format-1 file is accepted only when no optimiser state is wanted.
inline torch::serialize::InputArchive open_checkpoint(const std::string& path,
                                                      std::optional<torch::Device> device,
                                                      bool with_optimizer) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), kLoadWhere, ": no checkpoint file '", path,
              "'");
  const auto bytes = read_file_bytes(path, kLoadWhere);
  const bool bare = bytes.compare(0, 2, "PK") == 0;  // format 1: a LibTorch zip archive
  size_t offset = 0;
  if (!bare) {
    TORCH_CHECK(bytes.compare(0, 16, kCheckpointMagic) == 0, kLoadWhere, ": '", path,
                "' is not a SimSiam++ checkpoint");
    const auto damage = checkpoint_damage(bytes);
    TORCH_CHECK(damage.empty(), kLoadWhere, ": '", path, "' is damaged: ", damage);
    offset = kCheckpointHeaderBytes;
  }
  torch::serialize::InputArchive archive;
  c10::IValue format;
  try {
    c10::optional<torch::Device> map_location;
    if (device) map_location = *device;
    archive.load_from(bytes.data() + offset, bytes.size() - offset, map_location);
    archive.read("format", format);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, kLoadWhere, ": '", path,
                "' is not a readable SimSiam++ checkpoint (truncated or corrupt?): ",
                e.what_without_backtrace());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, kLoadWhere, ": '", path, "' is not a SimSiam++ checkpoint: ", e.what());
  }
  TORCH_CHECK(format.isString(), kLoadWhere, ": '", path, "' is not a SimSiam++ checkpoint");
  const bool first_version = format.toStringRef() == kCheckpointFormatV1;
  TORCH_CHECK(first_version || format.toStringRef() == kCheckpointFormat, kLoadWhere, ": '", path,
              "' is not a SimSiam++ checkpoint of a known format (expected '", kCheckpointFormat,
              "', found '", format.toStringRef(), "')");
  TORCH_CHECK(!first_version || !with_optimizer, kLoadWhere, ": '", path,
              "' was written by SimSiam++ 0.1 (format 1), whose optimiser state LibTorch keyed "
              "by memory addresses that cannot be mapped back reliably (LibTorch 2.x misreads "
              "them); resume it with SimSiam++ 0.1 on the LibTorch that wrote it, or start a new "
              "run from its weights: load_checkpoint(path, model, /*optimizer=*/nullptr) reads "
              "them");
  return archive;
}

/// Fails unless the checkpoint's parameters and buffers (names, shapes, dtypes) are `model`'s.
inline void check_signature(torch::serialize::InputArchive& archive, torch::nn::Module& model,
                            const std::string& path) {
  const auto saved = read_strings(archive, "signature");
  const auto current = module_signature(model);
  for (size_t i = 0; i < std::max(saved.size(), current.size()); ++i) {
    const std::string was = i < saved.size() ? saved[i] : "(nothing)";
    const std::string is = i < current.size() ? current[i] : "(nothing)";
    TORCH_CHECK(was == is, kLoadWhere, ": '", path, "' was written for another model: its entry ",
                i, " is '", was, "' where this model has '", is, "'");
  }
}

/// The run configuration in the checkpoint; fails, listing every difference, unless it equals
/// `expected` (when given).
inline RunConfig read_config(torch::serialize::InputArchive& archive, const RunConfig* expected,
                             const std::string& path) {
  RunConfig config;
  const auto keys = read_strings(archive, "config/keys");
  const auto values = read_strings(archive, "config/values");
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) config[keys[i]] = values[i];
  if (expected == nullptr) return config;
  const auto lookup = [](const RunConfig& in, const std::string& key) {
    const auto it = in.find(key);
    return it == in.end() ? std::string("(unset)") : it->second;
  };
  RunConfig all = config;
  all.insert(expected->begin(), expected->end());
  std::ostringstream differences;
  for (const auto& item : all) {
    const auto was = lookup(config, item.first), is = lookup(*expected, item.first);
    if (was != is) differences << " " << item.first << "=" << was << " (now " << is << ")";
  }
  TORCH_CHECK(differences.str().empty(), kLoadWhere, ": '", path,
              "' was written with another configuration:", differences.str());
  return config;
}

/// The checkpoint's optimiser state into `optimizer`, or an error saying why it does not fit.
inline void load_optimizer(torch::serialize::InputArchive& archive,
                           torch::optim::Optimizer& optimizer, const std::string& path) {
  torch::serialize::InputArchive optimizer_archive;
  TORCH_CHECK(archive.try_read("optimizer", optimizer_archive), kLoadWhere, ": '", path,
              "' holds no optimiser state");
  try {
    read_optimizer(optimizer_archive, optimizer, path);
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    TORCH_CHECK(message.rfind(kLoadWhere, 0) != 0, message);
    TORCH_CHECK(false, kLoadWhere, ": the optimiser state in '", path,
                "' does not fit this optimiser: ", message);
  }
}

}  // namespace detail

/// Reads a checkpoint written by `save_checkpoint` into `model` and `optimizer` (may be null)
/// and returns the rest. Refuses, naming the reason, a damaged file (checksum), one whose
/// parameters and buffers (names, shapes, dtypes) differ from `model`'s, whose configuration
/// differs from `expected_config` when one is given, or whose optimiser state does not fit
/// `optimizer`; all of that is checked before anything is loaded. Tensors are mapped to `device`
/// (that of the model's parameters) when given. A first-version checkpoint (format 1) gives its
/// weights when `optimizer` is null and is refused otherwise.
inline CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer* optimizer,
                                       const RunConfig* expected_config = nullptr,
                                       std::optional<torch::Device> device = std::nullopt) {
  auto archive = detail::open_checkpoint(path, device, optimizer != nullptr);
  detail::check_signature(archive, model, path);
  CheckpointState state;
  state.config = detail::read_config(archive, expected_config, path);
  state.epoch = detail::read_int(archive, "epoch");
  state.step = detail::read_int(archive, "step");
  state.schedule_steps = detail::read_int(archive, "schedule_steps");
  for (const auto& name : detail::read_strings(archive, "tensors")) {
    torch::Tensor tensor;
    archive.read("tensors/" + name, tensor, /*is_buffer=*/true);
    state.tensors[name] = tensor;
  }
  if (optimizer != nullptr) detail::load_optimizer(archive, *optimizer, path);
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
  return state;
}

}  // namespace simsiam
