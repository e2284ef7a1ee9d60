// SPDX-License-Identifier: BSD-3-Clause
// CosineSchedule and the SGD recipe against main_simsiam.py's adjust_learning_rate and optimiser.
#include "simsiam/optim/cosine_schedule.hpp"

#include <cmath>

#include "simsiam/backbones/convnet.hpp"
#include "simsiam/model/simsiam.hpp"
#include "simsiam/optim/recipe.hpp"
#include "support/catch.hpp"

namespace {

constexpr double kPi = 3.14159265358979323846;

double lr_of(torch::optim::Optimizer& optimizer, size_t group) {
  return optimizer.param_groups()[group].options().get_lr();
}

}  // namespace

TEST_CASE("cosine_lr equals the official formula at chosen epochs", "[optim][schedule]") {
  using simsiam::functional::cosine_lr;
  // adjust_learning_rate: init_lr * 0.5 * (1 + cos(pi * epoch / epochs)).
  for (const int64_t epoch : {0, 1, 25, 50, 99}) {
    INFO("epoch " << epoch);
    CHECK(cosine_lr(0.1, epoch, 100) == Approx(0.1 * 0.5 * (1 + std::cos(kPi * epoch / 100.0))));
  }
  CHECK(cosine_lr(0.1, 50, 100) == Approx(0.05));
  CHECK(cosine_lr(0.1, 0, 100) == 0.1);
  CHECK(cosine_lr(0.1, 100, 100) == Approx(0.0).margin(1e-15));
  CHECK(cosine_lr(0.1, 150, 100) == Approx(0.0).margin(1e-15));
  // Warmup: linear (t + 1) / W, then the decay over the remaining positions.
  CHECK(cosine_lr(0.1, 0, 10, 2) == Approx(0.05));
  CHECK(cosine_lr(0.1, 1, 10, 2) == Approx(0.1));
  CHECK(cosine_lr(0.1, 2, 10, 2) == Approx(0.1));
  CHECK(cosine_lr(0.1, 6, 10, 2) == Approx(0.05));
  CHECK_THROWS_WITH(cosine_lr(0.1, 0, 10, 10), Contains("0 <= warmup < total"));
}

TEST_CASE("CosineSchedule sets the decayed lr per epoch and keeps fixed groups",
          "[optim][schedule]") {
  auto a = torch::zeros({2}, torch::requires_grad());
  auto b = torch::zeros({2}, torch::requires_grad());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a},
                      std::make_unique<torch::optim::SGDOptions>(0.2));
  groups.emplace_back(std::vector<torch::Tensor>{b},
                      std::make_unique<torch::optim::SGDOptions>(0.2));
  torch::optim::SGD sgd(std::move(groups), torch::optim::SGDOptions(0.2));
  simsiam::CosineSchedule schedule(sgd, simsiam::CosineScheduleOptions(8).fixed_groups({1}));
  for (int64_t epoch = 0; epoch < 8; ++epoch) {
    schedule.step();  // before epoch `epoch`, as the official loop calls adjust_learning_rate
    INFO("epoch " << epoch);
    CHECK(lr_of(sgd, 0) == Approx(0.2 * 0.5 * (1 + std::cos(kPi * epoch / 8.0))));
    CHECK(lr_of(sgd, 1) == 0.2);  // --fix-pred-lr: the predictor keeps the initial lr
    CHECK(schedule.position() == epoch + 1);
  }
  CHECK(schedule.lrs_at(4)[0] == Approx(0.1));
  CHECK_THROWS_WITH(
      simsiam::CosineSchedule(sgd, simsiam::CosineScheduleOptions(8).fixed_groups({2})),
      Contains("fixed group 2 does not exist; the optimizer has 2"));
  CHECK_THROWS_WITH(simsiam::CosineSchedule(sgd, simsiam::CosineScheduleOptions(0)),
                    Contains("expected total > 0"));
}

TEST_CASE("make_sgd is the official optimiser: scaled lr, two groups, momentum, decay on all",
          "[optim][recipe]") {
  simsiam::ConvNet backbone(simsiam::ConvNetOptions(1).widths({4, 8}));
  simsiam::SimSiam<simsiam::ConvNet> model(
      backbone, simsiam::SimSiamOptions().dim(16).pred_dim(4).projector_layers(2));
  const auto recipe = simsiam::SgdRecipe().base_lr(0.05).batch_size(512).weight_decay(1e-4);
  CHECK(recipe.lr() == Approx(0.1));  // 0.05 x 512 / 256
  auto sgd = simsiam::make_sgd(model, recipe);
  REQUIRE(sgd.param_groups().size() == 2);
  CHECK(sgd.param_groups()[0].params().size() == model->encoder_parameters().size());
  CHECK(sgd.param_groups()[simsiam::kPredictorGroup].params().size() ==
        model->predictor_parameters().size());
  for (const auto& group : sgd.param_groups()) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    CHECK(o.lr() == Approx(0.1));
    CHECK(o.momentum() == 0.9);
    CHECK(o.weight_decay() == 1e-4);
  }
  auto schedule = simsiam::make_cosine_schedule(sgd, recipe, 100);
  for (int i = 0; i < 51; ++i) schedule.step();
  CHECK(lr_of(sgd, 0) == Approx(0.05));                        // epoch 50 of 100
  CHECK(lr_of(sgd, simsiam::kPredictorGroup) == Approx(0.1));  // fixed
  auto decaying = simsiam::make_sgd(model, simsiam::SgdRecipe().fix_predictor_lr(false));
  auto both =
      simsiam::make_cosine_schedule(decaying, simsiam::SgdRecipe().fix_predictor_lr(false), 2);
  both.step();
  both.step();
  CHECK(lr_of(decaying, 1) == Approx(lr_of(decaying, 0)));
  CHECK(lr_of(decaying, 1) == Approx(0.05));  // 0.1 * 0.5 * (1 + cos(pi / 2))
}

TEST_CASE("the recipe refuses bad options with the value it got", "[optim][recipe]") {
  simsiam::ConvNet backbone(simsiam::ConvNetOptions(1).widths({4}));
  simsiam::SimSiam<simsiam::ConvNet> model(backbone, simsiam::SimSiamOptions().dim(8).pred_dim(2));
  CHECK_THROWS_WITH(simsiam::make_sgd(model, simsiam::SgdRecipe().base_lr(0)),
                    Contains("expected base_lr > 0, got 0"));
  CHECK_THROWS_WITH(simsiam::make_sgd(model, simsiam::SgdRecipe().base_lr(-0.1)),
                    Contains("expected base_lr > 0, got -0.1"));
  CHECK_THROWS_WITH(simsiam::make_sgd(model, simsiam::SgdRecipe().batch_size(0)),
                    Contains("expected batch_size > 0, got 0"));
  CHECK_THROWS_WITH(simsiam::make_sgd(model, simsiam::SgdRecipe().weight_decay(-1)),
                    Contains("weight_decay >= 0"));
}
