// SPDX-License-Identifier: BSD-3-Clause
// Helpers shared by the tests: reference fixtures made by PyTorch and the deterministic fill
// that both sides use for weights and inputs (see tests/fixtures/make_core_fixtures.py).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace simsiam::testing {

/// tests/fixtures/<name>.json, parsed once.
inline const nlohmann::json& fixture_file(const std::string& name) {
  static std::map<std::string, nlohmann::json> cache;
  auto found = cache.find(name);
  if (found == cache.end()) {
    std::ifstream in(std::string(SIMSIAM_FIXTURES_DIR) + "/" + name + ".json");
    if (!in) throw std::runtime_error("cannot open tests/fixtures/" + name + ".json");
    found = cache.emplace(name, nlohmann::json::parse(in)).first;
  }
  return found->second;
}

/// The fixture file produced by make_core_fixtures.py.
inline const nlohmann::json& core_fixtures() { return fixture_file("core"); }

/// scale * sin(0.7 i + seed) in float64: `det_fill` of the fixture script. The reference values
/// are float64 so that they do not depend on the BLAS library's summation order.
inline torch::Tensor det_fill(std::vector<int64_t> shape, double seed, double scale) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  auto values = scale * torch::sin(torch::arange(n, torch::kDouble) * 0.7 + seed);
  return values.reshape(shape);
}

/// Fills the parameters of `module` in sorted-name order, as `fill_named` in the script.
inline void fill_named(torch::nn::Module& module, double scale = 0.2) {
  torch::NoGradGuard no_grad;
  auto params = module.named_parameters();
  std::vector<std::string> names = params.keys();
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i < names.size(); ++i) {
    auto& p = params[names[i]];
    p.copy_(det_fill(p.sizes().vec(), 0.5 + 1.3 * static_cast<double>(i), scale));
  }
}

/// A {"shape": [...], "data": [...]} fixture entry as a float64 tensor.
inline torch::Tensor tensor_of(const nlohmann::json& entry) {
  auto data = entry.at("data").get<std::vector<double>>();
  auto shape = entry.at("shape").get<std::vector<int64_t>>();
  return torch::tensor(data, torch::kDouble).reshape(shape);
}

/// Tolerance of comparisons against the float64 fixtures: far below the 1e-5 that float32 could
/// hold, so a wrong formula cannot hide in rounding.
constexpr double kFixtureTolerance = 1e-9;

/// Largest absolute difference, for messages.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

}  // namespace simsiam::testing

/// Checks that two tensors have one shape and agree within `tol`, absolutely or relatively:
/// |a - e| <= tol + tol * |e| everywhere (the zero-norm row of the loss fixture has gradients
/// of ~1e6, from CosineSimilarity's eps).
#define CHECK_TENSOR_NEAR(actual, expected, tol)                                             \
  do {                                                                                       \
    const auto simsiam_a = (actual);                                                         \
    const auto simsiam_e = (expected);                                                       \
    REQUIRE(simsiam_a.sizes() == simsiam_e.sizes());                                         \
    INFO("max |difference| = " << simsiam::testing::max_abs_diff(simsiam_a, simsiam_e));     \
    CHECK(torch::allclose(simsiam_a.to(torch::kDouble), simsiam_e.to(torch::kDouble), (tol), \
                          (tol)));                                                           \
  } while (false)
