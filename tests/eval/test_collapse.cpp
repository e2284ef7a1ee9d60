// SPDX-License-Identifier: BSD-3-Clause
// collapse_std: ~1/sqrt(d) for outputs spread over the sphere, 0 for a collapsed output.
#include "simsiam/eval/collapse.hpp"

#include "support/catch.hpp"

TEST_CASE("collapse_std is about 1/sqrt(d) for isotropic outputs", "[collapse]") {
  torch::manual_seed(1);
  for (const int64_t d : {64, 2048}) {
    INFO("d " << d);
    const auto z = torch::randn({4096, d});
    CHECK(simsiam::functional::collapse_std(z).item<double>() ==
          Approx(1.0 / std::sqrt(static_cast<double>(d))).epsilon(0.02));
  }
}

TEST_CASE("collapse_std is 0 for a constant output, whatever its scale", "[collapse]") {
  const auto z = torch::randn({1, 128}).expand({256, 128}) * 7.0;
  CHECK(simsiam::functional::collapse_std(z).item<double>() == Approx(0.0).margin(1e-6));
}

TEST_CASE("collapse_std equals the community monitor formula", "[collapse]") {
  torch::manual_seed(2);
  const auto z = torch::randn({32, 10}) + 0.5;
  // lightly / SimSiam tutorials: normalize(z, dim=1), torch.std(., 0) (unbiased), mean.
  const auto zn = z / z.norm(2, 1, true);
  const auto by_hand = ((zn - zn.mean(0)).pow(2).sum(0) / 31.0).sqrt().mean();
  CHECK(simsiam::functional::collapse_std(z).item<double>() ==
        Approx(by_hand.item<double>()).margin(1e-6));
  CHECK_THROWS_WITH(simsiam::functional::collapse_std(torch::randn({1, 8})),
                    Contains("expected z of shape [B, d] with B > 1, got [1, 8]"));
}
