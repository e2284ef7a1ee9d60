// SPDX-License-Identifier: BSD-3-Clause
// Checkpoints: round trip, atomic replacement, refusals naming what differs.
#include "simsiam/train/checkpoint.hpp"

#include <algorithm>
#include <fstream>

#include "support/catch.hpp"
#include "support/tiny_training.hpp"

namespace T = simsiam::testing;

TEST_CASE("a checkpoint round-trips weights, momentum, position, config and state tensors",
          "[train][checkpoint]") {
  T::ScratchDir dir("checkpoint");
  auto model = T::tiny_model(1);
  auto sgd = simsiam::make_sgd(model, simsiam::SgdRecipe().batch_size(16));
  const auto x = torch::randn({8, 1, 12, 12});
  const auto out = model->forward(x, x.flip(3));
  simsiam::SymmetricLoss<>()(out.p1, out.p2, out.z1, out.z2).backward();
  sgd.step();
  simsiam::CheckpointState state;
  state.epoch = 4;
  state.step = 40;
  state.schedule_steps = 5;
  state.config = {{"lr", "0.05"}, {"note", "a value, with = and spaces"}};
  state.tensors["rng/cpu"] = at::Generator(at::detail::getDefaultCPUGenerator()).get_state();
  const auto path = dir / "c.pt";
  simsiam::save_checkpoint(path, *model, &sgd, state);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  auto other = T::tiny_model(2);
  auto other_sgd = simsiam::make_sgd(other, simsiam::SgdRecipe().batch_size(16));
  const auto loaded = simsiam::load_checkpoint(path, *other, &other_sgd, &state.config);
  CHECK(T::identical(*model, *other));
  CHECK(loaded.epoch == 4);
  CHECK(loaded.step == 40);
  CHECK(loaded.schedule_steps == 5);
  CHECK(loaded.config == state.config);
  CHECK(torch::equal(loaded.tensors.at("rng/cpu"), state.tensors.at("rng/cpu")));
  REQUIRE(other_sgd.state().size() == sgd.state().size());
  // Same momentum: the next step from the same gradients gives the same weights.
  for (auto* m : {&model, &other}) {
    (*m)->zero_grad();
    const auto o = (*m)->forward(x, x.flip(3));
    simsiam::SymmetricLoss<>()(o.p1, o.p2, o.z1, o.z2).backward();
  }
  sgd.step();
  other_sgd.step();
  CHECK(T::identical(*model, *other));

  // A second save replaces the first atomically.
  state.epoch = 5;
  simsiam::save_checkpoint(path, *model, &sgd, state);
  CHECK(simsiam::load_checkpoint(path, *other, nullptr).epoch == 5);
}

TEST_CASE("loading refuses missing, corrupt and foreign files with a clear message",
          "[train][checkpoint]") {
  T::ScratchDir dir("bad_checkpoint");
  auto model = T::tiny_model();
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "missing.pt", *model, nullptr),
                    Contains("no checkpoint file '" + (dir / "missing.pt") + "'"));
  simsiam::save_checkpoint(dir / "good.pt", *model, nullptr, {});
  {
    std::ifstream in(dir / "good.pt", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream out(dir / "cut.pt", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "cut.pt", *model, nullptr),
                    Contains("cut.pt' is damaged") && Contains("(truncated?)"));
  CHECK_THAT(simsiam::verify_checkpoint(dir / "cut.pt"), Contains("truncated"));
  CHECK(simsiam::verify_checkpoint(dir / "good.pt").empty());
  // A plain LibTorch archive of the module (torch::save) is not a checkpoint.
  torch::save(model, dir / "plain.pt");
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "plain.pt", *model, nullptr),
                    Contains("not") && Contains("SimSiam++ checkpoint"));
  // Another model: the first differing entry is named.
  auto other = T::tiny_model(0, 24);
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "good.pt", *other, nullptr),
                    Contains("was written for another model"));
  // Optimiser state that does not fit (three groups instead of two).
  simsiam::save_checkpoint(
      dir / "with_sgd.pt", *model,
      std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1)).get(),
      {});
  auto sgd = simsiam::make_sgd(model, simsiam::SgdRecipe());
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "with_sgd.pt", *model, &sgd),
                    Contains("does not fit this optimiser"));
  CHECK_THROWS_WITH(simsiam::save_checkpoint("/nonexistent/dir/c.pt", *model, nullptr, {}),
                    Contains("cannot write '/nonexistent/dir/c.pt.tmp'"));
}

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("a checkpoint with one flipped byte is refused by its checksum, wherever the byte is",
          "[train][checkpoint]") {
  T::ScratchDir dir("flipped_checkpoint");
  auto model = T::tiny_model(3);
  simsiam::save_checkpoint(dir / "good.pt", *model, nullptr, {});
  const auto bytes = file_bytes(dir / "good.pt");
  // In the header's length, in the payload's first record, in the middle (tensor data), last.
  for (const size_t at : {size_t{17}, size_t{40}, bytes.size() / 2, bytes.size() - 1}) {
    INFO("byte " << at);
    auto damaged = bytes;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
    write_bytes(dir / "flipped.pt", damaged);
    CHECK_FALSE(simsiam::verify_checkpoint(dir / "flipped.pt").empty());
    auto other = T::tiny_model(4);
    CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "flipped.pt", *other, nullptr),
                      Contains("flipped.pt' is damaged"));
    CHECK_FALSE(T::identical(*model, *other));  // nothing was loaded
  }
  CHECK_THAT(simsiam::verify_checkpoint(dir / "none.pt"), Contains("no such file"));
}

TEST_CASE("optimiser state is keyed by group and index, for any LibTorch optimiser",
          "[train][checkpoint]") {
  T::ScratchDir dir("optimizer_state");
  auto model = T::tiny_model(5);
  const auto x = torch::randn({8, 1, 12, 12});
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  for (int step = 0; step < 2; ++step) {
    adam.zero_grad();
    const auto out = model->forward(x, x.flip(3));
    simsiam::SymmetricLoss<>()(out.p1, out.p2, out.z1, out.z2).backward();
    adam.step();
  }
  simsiam::save_checkpoint(dir / "adam.pt", *model, &adam, {});

  auto other = T::tiny_model(6);
  torch::optim::Adam other_adam(other->parameters(), torch::optim::AdamOptions(1e-3));
  simsiam::load_checkpoint(dir / "adam.pt", *other, &other_adam);
  REQUIRE(other_adam.state().size() == adam.state().size());
  // Each parameter's step count and moments, found through the other model's parameters.
  const auto params = model->parameters(), other_params = other->parameters();
  using Map = std::decay_t<decltype(adam.state())>;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto it = adam.state().find(simsiam::detail::param_state_key<Map>(params[i]));
    if (it == adam.state().end()) continue;
    const auto& a = static_cast<const torch::optim::AdamParamState&>(*it->second);
    const auto& b = static_cast<const torch::optim::AdamParamState&>(
        *other_adam.state().at(simsiam::detail::param_state_key<Map>(other_params[i])));
    CHECK(a.step() == b.step());
    CHECK(torch::equal(a.exp_avg(), b.exp_avg()));
    CHECK(torch::equal(a.exp_avg_sq(), b.exp_avg_sq()));
  }

  // Another optimiser type is named.
  auto sgd = simsiam::make_sgd(other, simsiam::SgdRecipe());
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "adam.pt", *other, &sgd),
                    Contains("holds the state of a torch::optim::Adam, not of this "
                             "torch::optim::SGD"));
  // A parameter of another shape in the same position is named.
  auto shuffled = T::tiny_model(5);
  auto reversed = shuffled->parameters();
  std::reverse(reversed.begin(), reversed.end());
  torch::optim::Adam reversed_adam(reversed, torch::optim::AdamOptions(1e-3));
  CHECK_THROWS_WITH(simsiam::load_checkpoint(dir / "adam.pt", *shuffled, &reversed_adam),
                    Contains("does not fit this optimiser: parameter 0 of group 0 was"));
}

TEST_CASE("a first-version checkpoint gives its weights and refuses to resume, saying why",
          "[train][checkpoint]") {
  // Written by SimSiam++ 0.1 on LibTorch 1.13 (tests/fixtures/make_checkpoint_v1.cpp): the tiny
  // model with parameter i at 0.01 (i + 1), and SGD momentum keyed by memory address.
  const std::string path = std::string(SIMSIAM_FIXTURES_DIR) + "/checkpoint_v1.pt";
  auto model = T::tiny_model(9);
  const auto state = simsiam::load_checkpoint(path, *model, nullptr);
  CHECK(state.epoch == 1);
  double value = 0.01;
  for (const auto& p : model->parameters()) {
    CHECK(torch::equal(p, torch::full_like(p, value)));
    value += 0.01;
  }
  auto sgd = simsiam::make_sgd(model, simsiam::SgdRecipe());
  CHECK_THROWS_WITH(simsiam::load_checkpoint(path, *model, &sgd),
                    Contains("was written by SimSiam++ 0.1 (format 1)") &&
                        Contains("load_checkpoint(path, model, /*optimizer=*/nullptr)"));
  CHECK_THAT(simsiam::verify_checkpoint(path), Contains("bare LibTorch archive"));
}
