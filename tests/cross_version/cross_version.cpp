// SPDX-License-Identifier: BSD-3-Clause
// Checkpoints across LibTorch versions: the same tiny run on each platform, interrupted after its
// first epoch or not, and resumed from the other platform's checkpoint. run.sh compares what the
// runs print (exact, as hexadecimal floats).
//
//   simsiam_cross_version straight  RUN_DIR OPTIMIZER   3 epochs in one go
//   simsiam_cross_version first     RUN_DIR OPTIMIZER   epoch 1 only: RUN_DIR/checkpoint.pt
//   simsiam_cross_version resume    RUN_DIR OPTIMIZER   from RUN_DIR/checkpoint.pt to epoch 3
//
// OPTIMIZER is sgd (the recipe: momentum SGD in two groups) or adam. Each run writes
// RUN_DIR/result.txt: the loss of every step after epoch 1, then every parameter, buffer and
// optimiser state tensor.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "simsiam/optim/detail/param_state.hpp"
#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

namespace {

/// Records the loss of every step after the first epoch.
struct StepLosses : simsiam::Hook {
  std::vector<std::pair<int64_t, double>> losses;
  void on_step_end(simsiam::TrainState& state) override {
    if (state.epoch > 0) losses.emplace_back(state.global_step, state.loss);
  }
};

void write_tensor(std::ofstream& out, const std::string& name, const torch::Tensor& t) {
  const auto values = t.detach().to(torch::kDouble).contiguous().view({-1});
  out << name << " " << t.sizes() << " " << t.scalar_type() << "\n";
  char text[40];
  for (int64_t i = 0; i < values.numel(); ++i) {
    std::snprintf(text, sizeof text, "%a\n", values.data_ptr<double>()[i]);
    out << text;
  }
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
  auto& state = optimizer.state();
  for (size_t g = 0; g < optimizer.param_groups().size(); ++g) {
    const auto& params = optimizer.param_groups()[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto it =
          state.find(simsiam::detail::param_state_key<std::decay_t<decltype(state)>>(params[i]));
      if (it == state.end()) continue;
      const std::string name = "optimizer/" + std::to_string(g) + "/" + std::to_string(i);
      if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get())) {
        write_tensor(out, name + "/momentum_buffer", sgd->momentum_buffer());
      } else if (const auto* adam =
                     dynamic_cast<const torch::optim::AdamParamState*>(it->second.get())) {
        out << name << "/step " << adam->step() << "\n";
        write_tensor(out, name + "/exp_avg", adam->exp_avg());
        write_tensor(out, name + "/exp_avg_sq", adam->exp_avg_sq());
      }
    }
  }
  TORCH_CHECK(out.good(), "cannot write ", path);
}

template <class Optimizer>
int run(const std::string& mode, const std::string& run_dir, T::TinyModel& model,
        Optimizer& optimizer) {
  constexpr int64_t kEpochs = 3;
  auto loader = T::tiny_loader();
  auto options = T::quiet_options(kEpochs, run_dir).config({{"test", "cross_version"}});
  if (mode == "resume") options.resume(run_dir + "/checkpoint.pt");
  simsiam::Trainer trainer(model, loader, optimizer, nullptr, options);
  auto losses = std::make_shared<StepLosses>();
  trainer.add_hook(losses);
  if (mode == "first") trainer.add_hook(std::make_shared<T::StopAfterEpoch>(0));
  trainer.fit();
  if (mode != "first") write_result(run_dir + "/result.txt", *losses, model, optimizer);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s straight|first|resume RUN_DIR sgd|adam\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], run_dir = argv[2], optimizer = argv[3];
  torch::set_num_threads(1);
  try {
    auto model = T::tiny_model(0);
    if (optimizer == "adam") {
      torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
      return run(mode, run_dir, model, adam);
    }
    auto sgd = simsiam::make_sgd(
        model, simsiam::SgdRecipe().base_lr(0.1).batch_size(16).weight_decay(5e-4));
    return run(mode, run_dir, model, sgd);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simsiam_cross_version: %s\n", e.what());
    return 1;
  }
}
