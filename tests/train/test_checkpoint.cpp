// Checkpoints: round trip, atomic replacement, refusals naming what differs.
#include "simsiam/train/checkpoint.hpp"

#include "support/catch.hpp"

#include <fstream>

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
                    Contains("is not a readable SimSiam++ checkpoint"));
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
