// SPDX-License-Identifier: BSD-3-Clause
// Batched augmentation operations against torchvision 0.14 (functional_tensor.py), per image.
#include "simsiam/augment/functional.hpp"

#include "support/catch.hpp"

#include "support/fixtures.hpp"

namespace {

namespace AF = simsiam::augment::functional;
using simsiam::testing::fixture_file;
using simsiam::testing::tensor_of;

const nlohmann::json& cases(const std::string& kind) {
  return fixture_file("augment").at(kind + "_cases");
}

torch::Tensor images(const std::string& kind) {
  return tensor_of(fixture_file("augment").at(kind)).to(torch::kFloat);
}

torch::Tensor floats(const nlohmann::json& values) {
  return torch::tensor(values.get<std::vector<double>>(), torch::kFloat);
}

}  // namespace

// float32 takes the fused CPU loops where they exist, float64 the tensor-operation path that
// CUDA and other dtypes use: both must equal torchvision.
const torch::ScalarType kDtypes[] = {torch::kFloat, torch::kDouble};

TEST_CASE("per-image colour operations equal torchvision's", "[augment]") {
  for (const auto dtype : kDtypes)
    for (const std::string kind : {"rgb", "gray"}) {
      INFO(kind << " " << dtype);
      const auto x = images(kind).to(dtype);
      const auto& c = cases(kind);
      CHECK_TENSOR_NEAR(AF::adjust_brightness(x, floats(c["brightness"]["factors"])),
                        tensor_of(c["brightness"]["output"]), 1e-5);
      CHECK_TENSOR_NEAR(AF::adjust_contrast(x, floats(c["contrast"]["factors"])),
                        tensor_of(c["contrast"]["output"]), 1e-5);
      CHECK_TENSOR_NEAR(AF::adjust_saturation(x, floats(c["saturation"]["factors"])),
                        tensor_of(c["saturation"]["output"]), 1e-5);
      CHECK_TENSOR_NEAR(AF::adjust_hue(x, floats(c["hue"]["factors"])),
                        tensor_of(c["hue"]["output"]), 1e-5);
      CHECK_TENSOR_NEAR(AF::rgb_to_grayscale(x), tensor_of(c["grayscale_1"]["output"]), 1e-5);
    }
}

TEST_CASE("blur, flip, normalize and crop+resize equal torchvision's", "[augment]") {
  for (const auto dtype : kDtypes)
    for (const std::string kind : {"rgb", "gray"}) {
      INFO(kind << " " << dtype);
      const auto x = images(kind).to(dtype);
      const auto& c = cases(kind);
      CHECK_TENSOR_NEAR(AF::gaussian_blur(x, c["blur"]["kernel_size"].get<int64_t>(),
                                          floats(c["blur"]["sigmas"])),
                        tensor_of(c["blur"]["output"]), 1e-5);
      CHECK_TENSOR_NEAR(AF::horizontal_flip(x, torch::tensor({true, false})),
                        tensor_of(c["hflip"]["output"]), 0.0);
      CHECK_TENSOR_NEAR(AF::normalize(x, c["normalize"]["mean"].get<std::vector<double>>(),
                                      c["normalize"]["std"].get<std::vector<double>>()),
                        tensor_of(c["normalize"]["output"]), 1e-5);
      for (const int64_t size : {7, 12}) {
        INFO("resized_crop to " << size);
        const auto& crop = c["resized_crop_" + std::to_string(size)];
        const auto all_boxes =
            torch::stack({torch::tensor(crop["boxes"][0].get<std::vector<int64_t>>()),
                          torch::tensor(crop["boxes"][1].get<std::vector<int64_t>>())});
        CHECK_TENSOR_NEAR(AF::resized_crop(x, all_boxes, size), tensor_of(crop["output"]), 1e-5);
        // uint8 input is read as value / 255.
        const auto u8 = (x.to(torch::kFloat) * 255).round().to(torch::kUInt8);
        CHECK_TENSOR_NEAR(AF::resized_crop(u8, all_boxes, size),
                          AF::resized_crop(u8.to(torch::kFloat) / 255, all_boxes, size), 1e-6);
      }
    }
}

TEST_CASE("hue rotation by a full turn and colour ops on gray images are identities", "[augment]") {
  const auto x = images("rgb");
  CHECK_TENSOR_NEAR(AF::hsv_to_rgb(AF::rgb_to_hsv(x)), x, 1e-5);
  const auto g = images("gray");
  CHECK(torch::equal(AF::adjust_saturation(g, torch::tensor({0.3f, 1.7f})), g));
  CHECK(torch::equal(AF::adjust_hue(g, torch::tensor({0.2f, -0.4f})), g));
}

TEST_CASE("bad augmentation inputs fail clearly", "[augment][errors]") {
  const auto x = images("rgb");
  CHECK_THROWS_WITH(AF::adjust_brightness(torch::rand({3, 8, 8}), torch::ones({1})),
                    Contains("expected images [B, C, H, W] with C = 1 or 3, got [3, 8, 8]"));
  CHECK_THROWS_WITH(AF::adjust_contrast(torch::rand({2, 2, 8, 8}), torch::ones({2})),
                    Contains("with C = 1 or 3, got [2, 2, 8, 8]"));
  CHECK_THROWS_WITH(AF::adjust_hue(x, torch::tensor({0.6f, 0.0f})),
                    Contains("expected hue factors in [-0.5, 0.5]"));
  CHECK_THROWS_WITH(AF::adjust_saturation(x, torch::ones({3})),
                    Contains("expected one factor per image ([2]) or one for all, got [3]"));
  CHECK_THROWS_WITH(AF::gaussian_blur(x, 4, torch::ones({2})),
                    Contains("expected an odd positive kernel size, got 4"));
  CHECK_THROWS_WITH(AF::resized_crop(x, torch::tensor({{0L, 0L, 14L, 5L}, {0L, 0L, 2L, 2L}}), 4),
                    Contains("expected boxes inside the 13x17 images"));
  // The tensor path (any device; float64 here) checks the boxes where they were given.
  CHECK_THROWS_WITH(
      AF::resized_crop(x.to(torch::kDouble), torch::tensor({{0L, 0L, 14L, 5L}, {0L, 0L, 2L, 2L}}),
                       4, torch::kDouble),
      Contains("expected boxes inside the 13x17 images"));
  CHECK_THROWS_WITH(AF::gaussian_blur(x, 3, torch::tensor({1.0, -0.5})),
                    Contains("expected sigmas > 0"));
  CHECK_THROWS_WITH(AF::resized_crop(x, torch::zeros({2, 4}, torch::kLong), 0),
                    Contains("expected size > 0, got 0"));
  CHECK_THROWS_WITH(AF::normalize(x, {0.5}, {0.5}),
                    Contains("expected 3 means and stds for 3-channel images, got 1 and 1"));
  CHECK_THROWS_WITH(AF::adjust_brightness(x.to(torch::kLong), torch::ones({2})),
                    Contains("expected floating-point images in [0, 1], got Long"));
}

TEST_CASE("uint8 crops are the bilinear blend of the raw values, rounded", "[augment]") {
  auto generator = at::detail::createCPUGenerator(3);
  const auto u8 = torch::randint(0, 256, {2, 3, 13, 17}, generator, torch::kLong).to(torch::kByte);
  const auto boxes = torch::tensor({{1L, 2L, 9L, 11L}, {0L, 0L, 13L, 17L}});
  const auto as_float = AF::resized_crop(u8, boxes, 8);
  const auto as_byte = AF::resized_crop(u8, boxes, 8, torch::kByte);
  CHECK(as_byte.scalar_type() == torch::kByte);
  // The float32 blend of the raw 0-255 values, rounded: within half a level of the exact
  // (float64) bilinear value, and at most one level from the float crop times 255.
  const auto raw = AF::resized_crop(u8.to(torch::kFloat), boxes, 8);
  CHECK(torch::equal(as_byte, (raw + 0.5f).floor().to(torch::kByte)));
  const auto exact = AF::resized_crop(u8.to(torch::kDouble), boxes, 8, torch::kDouble);
  CHECK((as_byte.to(torch::kDouble) - exact).abs().max().item<double>() <= 0.5 + 1e-4);
  CHECK((as_byte.to(torch::kFloat) - as_float * 255).abs().max().item<float>() <= 0.5f + 1e-3f);
  // The tensor path (the GPU's) computes the same; a compiler that fuses a multiply-add (FMA
  // with -march) may round a value at x.5 the other way: one level at most.
  const auto tensor_path =
      AF::resized_crop(u8.transpose(2, 3).contiguous().transpose(2, 3), boxes, 8, torch::kByte);
  CHECK((tensor_path.to(torch::kInt) - as_byte.to(torch::kInt)).abs().max().item<int>() <= 1);
  CHECK((tensor_path != as_byte).sum().item<int64_t>() <= 2);
  CHECK_THROWS_WITH(AF::resized_crop(as_float, boxes, 4, torch::kByte),
                    Contains("expected uint8 images for uint8 crops, got Float"));
}

TEST_CASE("parameters reach the device as a conversion would take them", "[augment]") {
  // On a GPU through pinned memory without blocking the host; the values are the same.
  const auto values = torch::tensor({0.1, 2.5, -3.0}, torch::kDouble);
  const auto moved = AF::detail::to_device(values, torch::kCPU, torch::kFloat);
  CHECK(moved.scalar_type() == torch::kFloat);
  CHECK(torch::equal(moved, values.to(torch::kFloat)));
  CHECK(torch::equal(AF::detail::to_device(values.gt(0), torch::kCPU, torch::kBool),
                     torch::tensor({true, true, false})));
}

TEST_CASE("fused CPU hue rotation equals the tensor path on every hue sector", "[augment]") {
  auto gen = at::detail::createCPUGenerator(12);
  auto x = torch::rand({16, 3, 32, 32}, gen);
  x.index_put_({0}, 0.5);                                    // gray: s = 0
  x.index_put_({1, 0}, 1.0);                                 // saturated red channel
  x.index_put_({2}, torch::rand({1, 32, 32}, gen).round());  // pure primaries and black/white
  const auto shifts =
      torch::cat({torch::tensor({0.5f, -0.5f, 0.25f}), torch::rand({13}, gen) - 0.5f});
  const auto fused = AF::adjust_hue(x, shifts);                       // float32: fused loop
  const auto generic = AF::adjust_hue(x.to(torch::kDouble), shifts);  // float64: tensor path
  CHECK_TENSOR_NEAR(fused, generic, 1e-5);
  const auto sectors = torch::floor(AF::rgb_to_hsv(x).select(1, 0) * 6).to(torch::kLong).flatten();
  CHECK((torch::bincount(sectors, {}, 6) > 0).all().item<bool>());  // all six hsv->rgb sectors
}

TEST_CASE("fused CPU loops equal the tensor-operation path", "[augment]") {
  auto gen = at::detail::createCPUGenerator(21);
  const auto x = torch::rand({5, 3, 37, 41}, gen);  // odd sizes: vector loops and their tails
  const auto xd = x.to(torch::kDouble);
  const auto f = torch::rand({5}, gen) * 1.6 + 0.2;
  CHECK_TENSOR_NEAR(AF::adjust_brightness(x, f), AF::adjust_brightness(xd, f), 1e-6);
  CHECK_TENSOR_NEAR(AF::adjust_contrast(x, f), AF::adjust_contrast(xd, f), 1e-6);
  CHECK_TENSOR_NEAR(AF::adjust_saturation(x, f), AF::adjust_saturation(xd, f), 1e-6);
  CHECK_TENSOR_NEAR(AF::rgb_to_grayscale(x, 3), AF::rgb_to_grayscale(xd, 3), 1e-6);
  CHECK_TENSOR_NEAR(AF::rgb_to_grayscale(x, 1), AF::rgb_to_grayscale(xd, 1), 1e-6);
  const auto flip = torch::tensor({true, false, true, true, false});
  CHECK(
      torch::equal(AF::horizontal_flip(x, flip), AF::horizontal_flip(xd, flip).to(torch::kFloat)));
  const auto sigmas = torch::tensor({0.1, 0.5, 1.0, 2.0, 4.0});
  CHECK_TENSOR_NEAR(AF::gaussian_blur(x, 23, sigmas), AF::gaussian_blur(xd, 23, sigmas), 1e-6);
  const auto gray = torch::rand({2, 1, 9, 11}, gen);
  CHECK_TENSOR_NEAR(AF::adjust_contrast(gray, f.narrow(0, 0, 2)),
                    AF::adjust_contrast(gray.to(torch::kDouble), f.narrow(0, 0, 2)), 1e-6);
  // Crop: uint8 and float input through the fused loop against the tensor path (float64).
  const auto u8 = torch::randint(0, 256, {3, 3, 50, 60}, gen, torch::kUInt8);
  const auto boxes =
      torch::tensor({{0, 0, 50, 60}, {3, 7, 20, 11}, {40, 50, 10, 10}}, torch::kLong);
  const auto reference = AF::resized_crop(u8.to(torch::kDouble) / 255.0, boxes, 24);
  CHECK_TENSOR_NEAR(AF::resized_crop(u8, boxes, 24), reference, 1e-6);
  CHECK_TENSOR_NEAR(AF::resized_crop(u8.to(torch::kFloat) / 255.0, boxes, 24), reference, 1e-6);
}

TEST_CASE("the blur leaves out only taps below float32 resolution", "[augment]") {
  namespace AFD = AF::detail;
  const auto reach = [](double sigma) {
    const auto k = AF::gaussian_kernels(23, torch::tensor({sigma}, torch::kFloat)).contiguous();
    return AFD::kernel_reach(k.data_ptr<float>(), 11);
  };
  CHECK(reach(0.1) == 0);   // 0.1: neighbours weigh ~1e-22; the blur is the identity in float32
  CHECK(reach(1.0) == 5);   // exp(-36 / 2) ~ 1.5e-8: the sixth ring is below resolution
  CHECK(reach(2.0) == 11);  // all 23 taps matter
  for (double sigma : {0.1, 0.3, 1.0, 1.7}) {
    const auto k = AF::gaussian_kernels(23, torch::tensor({sigma}, torch::kDouble));
    const int64_t r = reach(sigma);
    const double dropped = 1.0 - k.narrow(1, 11 - r, 2 * r + 1).sum().item<double>();
    CHECK(dropped < std::ldexp(1.0, -25));
  }
}
