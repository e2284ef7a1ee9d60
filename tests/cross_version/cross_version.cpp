// SPDX-License-Identifier: BSD-3-Clause
// Checkpoints across LibTorch versions. The same tiny run on each platform; run.sh compares what
// the runs print (exact, as hexadecimal floats).
//
//   simsiam_cross_version straight RUN_DIR OPTIMIZER   3 epochs in one go: RUN_DIR/result.txt
//   simsiam_cross_version first    RUN_DIR OPTIMIZER   epoch 1 only: RUN_DIR/checkpoint.pt, and
//                                                      its optimiser state as text (state.txt)
//   simsiam_cross_version rebuild  RUN_DIR OPTIMIZER   RUN_DIR/rebuilt.pt: checkpoint.pt's
//       weights and position, with the optimiser state of state.txt, written by this platform
//   simsiam_cross_version resume   RUN_DIR OPTIMIZER CHECKPOINT   from CHECKPOINT (in RUN_DIR) to
//       epoch 3: RUN_DIR/result.txt
//
// OPTIMIZER is sgd (the recipe: momentum SGD in two groups) or adam. result.txt holds the loss of
// every step after epoch 1, then every parameter, buffer and optimiser state tensor. Resuming
// another platform's checkpoint.pt must give exactly what resuming rebuilt.pt gives: the same
// state, continued uninterrupted on this platform, reached without reading the other
// platform's optimiser archive.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "simsiam/optim/detail/param_state.hpp"
#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

namespace {

constexpr int64_t kEpochs = 3;

/// Records the loss of every step after the first epoch.
struct StepLosses : simsiam::Hook {
  std::vector<std::pair<int64_t, double>> losses;
  void on_step_end(simsiam::TrainState& state) override {
    if (state.epoch > 0) losses.emplace_back(state.global_step, state.loss);
  }
};

void write_values(std::ostream& out, const torch::Tensor& t) {
  const auto values = t.detach().to(torch::kDouble).contiguous().view({-1});
  out << values.numel() << "\n";
  char text[40];
  for (int64_t i = 0; i < values.numel(); ++i) {
    std::snprintf(text, sizeof text, "%a\n", values.data_ptr<double>()[i]);
    out << text;
  }
}

torch::Tensor read_values(std::istream& in, const torch::Tensor& like) {
  int64_t n = 0;
  in >> n;
  TORCH_CHECK(in && n == like.numel(), "state.txt: expected ", like.numel(), " values");
  auto values = torch::empty({n}, torch::kDouble);
  std::string word;
  for (int64_t i = 0; i < n; ++i) {
    in >> word;
    values[i] = std::strtod(word.c_str(), nullptr);
  }
  return values.view(like.sizes()).to(like.scalar_type());
}

template <class Optimizer>
auto key_of(Optimizer& optimizer, const torch::Tensor& p) {
  return simsiam::detail::param_state_key<std::decay_t<decltype(optimizer.state())>>(p);
}

/// Every parameter's optimiser state by group and index: "g i" then the values.
template <class Optimizer>
void write_state(std::ostream& out, Optimizer& optimizer) {
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto it = optimizer.state().find(key_of(optimizer, groups[g].params()[i]));
      if (it == optimizer.state().end()) continue;
      out << "param " << g << " " << i << "\n";
      if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get())) {
        write_values(out, sgd->momentum_buffer());
      } else {
        const auto& adam = static_cast<const torch::optim::AdamParamState&>(*it->second);
        out << adam.step() << "\n";
        write_values(out, adam.exp_avg());
        write_values(out, adam.exp_avg_sq());
      }
    }
  }
}

/// The state `write_state` wrote, into `optimizer`'s state map directly.
template <class Optimizer>
void read_state(std::istream& in, Optimizer& optimizer) {
  auto& groups = optimizer.param_groups();
  std::string word;
  size_t g = 0, i = 0;
  while (in >> word >> g >> i) {
    TORCH_CHECK(word == "param" && g < groups.size() && i < groups[g].params().size(),
                "state.txt: bad entry");
    const auto& p = groups[g].params()[i];
    if constexpr (std::is_same_v<Optimizer, torch::optim::Adam>) {
      auto state = std::make_unique<torch::optim::AdamParamState>();
      int64_t step = 0;
      in >> step;
      state->step(step);
      state->exp_avg(read_values(in, p));
      state->exp_avg_sq(read_values(in, p));
      optimizer.state()[key_of(optimizer, p)] = std::move(state);
    } else {
      auto state = std::make_unique<torch::optim::SGDParamState>();
      state->momentum_buffer(read_values(in, p));
      optimizer.state()[key_of(optimizer, p)] = std::move(state);
    }
  }
}

void write_tensor(std::ofstream& out, const std::string& name, const torch::Tensor& t) {
  out << name << " " << t.sizes() << " " << t.scalar_type() << "\n";
  write_values(out, t);
}

template <class Optimizer>
void write_result(const std::string& path, const StepLosses& losses, T::TinyModel& model,
                  Optimizer& optimizer) {
  std::ofstream out(path);
  char text[64];
  for (const auto& [step, loss] : losses.losses) {
    std::snprintf(text, sizeof text, "step %lld loss %a\n", static_cast<long long>(step), loss);
    out << text;
  }
  for (const auto& item : model->named_parameters()) write_tensor(out, item.key(), item.value());
  for (const auto& item : model->named_buffers()) write_tensor(out, item.key(), item.value());
  write_state(out, optimizer);
  TORCH_CHECK(out.good(), "cannot write ", path);
}

template <class Optimizer>
void train(const std::string& mode, const std::string& run_dir, const std::string& checkpoint,
           T::TinyModel& model, Optimizer& optimizer) {
  auto loader = T::tiny_loader();
  auto options = T::quiet_options(kEpochs, run_dir).config({{"test", "cross_version"}});
  if (mode == "resume") options.resume(run_dir + "/" + checkpoint);
  simsiam::Trainer trainer(model, loader, optimizer, nullptr, options);
  auto losses = std::make_shared<StepLosses>();
  trainer.add_hook(losses);
  if (mode == "first") trainer.add_hook(std::make_shared<T::StopAfterEpoch>(0));
  trainer.fit();
  if (mode == "first") {
    std::ofstream out(run_dir + "/state.txt");
    write_state(out, optimizer);
  } else {
    write_result(run_dir + "/result.txt", *losses, model, optimizer);
  }
}

/// checkpoint.pt's weights, position, RNG and scaler, with state.txt's optimiser state, saved
/// again by this platform as rebuilt.pt.
template <class Optimizer>
void rebuild(const std::string& run_dir, T::TinyModel& model, Optimizer& optimizer) {
  const auto state = simsiam::load_checkpoint(run_dir + "/checkpoint.pt", *model, nullptr);
  std::ifstream in(run_dir + "/state.txt");
  read_state(in, optimizer);
  simsiam::save_checkpoint(run_dir + "/rebuilt.pt", *model, &optimizer, state);
}

template <class Optimizer>
void run(const std::string& mode, const std::string& run_dir, const std::string& checkpoint,
         T::TinyModel& model, Optimizer& optimizer) {
  if (mode == "rebuild") {
    rebuild(run_dir, model, optimizer);
  } else {
    train(mode, run_dir, checkpoint, model, optimizer);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s straight|first|rebuild|resume RUN_DIR sgd|adam [CHECKPOINT]\n",
                 argv[0]);
    return 2;
  }
  const std::string mode = argv[1], run_dir = argv[2], optimizer = argv[3];
  const std::string checkpoint = argc > 4 ? argv[4] : "checkpoint.pt";
  torch::set_num_threads(1);
  try {
    auto model = T::tiny_model(0);
    if (optimizer == "adam") {
      torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
      run(mode, run_dir, checkpoint, model, adam);
    } else {
      auto sgd = simsiam::make_sgd(
          model, simsiam::SgdRecipe().base_lr(0.1).batch_size(16).weight_decay(5e-4));
      run(mode, run_dir, checkpoint, model, sgd);
    }
    return 0;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "simsiam_cross_version: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simsiam_cross_version: %s\n", e.what());
  }
  return 1;
}
