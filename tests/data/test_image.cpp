// SPDX-License-Identifier: BSD-3-Clause
// PNG and JPEG decoding against PIL (tests/fixtures/make_image_fixtures.py), encoding round trips,
// DCT-scaled decoding, and the errors for corrupt, truncated and non-image files.
#include "simsiam/data/image.hpp"

#include <filesystem>
#include <fstream>
#include <string>

#include "support/catch.hpp"
#include "support/fixtures.hpp"

namespace {

using simsiam::testing::fixture_file;
using simsiam::testing::tensor_of;

std::string image_path(const std::string& name) {
  return std::string(SIMSIAM_FIXTURES_DIR) + "/images/" + name;
}

torch::Tensor expected(const std::string& name) {
  return tensor_of(fixture_file("images").at(name)).to(torch::kUInt8);
}

std::string bytes_of(const std::string& name) {
  return simsiam::detail::read_file_bytes(image_path(name), "test");
}

int max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kInt) - b.to(torch::kInt)).abs().max().item<int>();
}

}  // namespace

TEST_CASE("PNGs of every colour type decode to PIL's RGB", "[data][image]") {
  for (const char* name : {"rgb8.png", "rgba8.png", "gray8.png", "gray_alpha8.png", "gray1.png",
                           "palette.png", "png_named.JPEG"}) {
    INFO(name);
    const auto image = simsiam::read_image(image_path(name));
    CHECK(image.sizes() == torch::IntArrayRef({3, 9, 13}));
    CHECK(torch::equal(image, expected(name)));
  }
  // 16-bit grey: the high byte of each sample (PIL itself clips 16-bit grey to 255 instead).
  CHECK(torch::equal(simsiam::read_png(image_path("gray16.png")), expected("gray8.png")));
}

TEST_CASE("JPEGs (YCbCr, grey, Adobe CMYK) decode to PIL's RGB", "[data][image]") {
  for (const char* name : {"rgb420.jpg", "gray.jpg", "cmyk.jpg"}) {
    INFO(name);
    const auto image = simsiam::read_image(image_path(name));
    CHECK(image.sizes() == torch::IntArrayRef({3, 24, 40}));
    CHECK(max_difference(image, expected(name)) <= 1);  // same libjpeg-turbo; CMYK rounding
  }
  const auto header = simsiam::jpeg_header(bytes_of("cmyk.jpg"));
  CHECK(header.cmyk);
  CHECK(header.width == 40);
  CHECK(header.height == 24);
}

TEST_CASE("encoders round-trip and write atomically", "[data][image]") {
  const auto rgb = expected("rgb8.png");
  CHECK(torch::equal(simsiam::decode_png(simsiam::encode_png(rgb)), rgb));
  const auto grey = rgb.narrow(0, 1, 1).contiguous();
  CHECK(torch::equal(simsiam::decode_png(simsiam::encode_png(grey)), grey.expand({3, -1, -1})));
  auto smooth = torch::linspace(0, 250, 48).view({1, 1, 48}).repeat({3, 32, 1});
  smooth.select(0, 2).copy_(torch::linspace(30, 200, 32).view({32, 1}).expand({32, 48}));
  const auto photo = smooth.round().to(torch::kUInt8);
  const auto again = simsiam::decode_jpeg(simsiam::encode_jpeg(photo, 95));
  CHECK((again.to(torch::kFloat) - photo.to(torch::kFloat)).abs().mean().item<float>() < 2.0f);
  const auto dir = std::filesystem::temp_directory_path() / "simsiam_test_image";
  std::filesystem::create_directories(dir);
  const auto path = (dir / "out.png").string();
  simsiam::write_png(rgb, path);
  simsiam::write_png(grey, path);  // replaces the file in one rename
  CHECK(torch::equal(simsiam::read_image(path), grey.expand({3, -1, -1})));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("DCT-domain scaled decoding gives the downscaled image", "[data][image]") {
  const auto full = torch::arange(96 * 64 * 3, torch::kInt).remainder(251).to(torch::kUInt8);
  auto smooth = torch::linspace(0, 255, 96).view({1, 1, 96}).expand({3, 64, 96}).clone();
  smooth.select(0, 1).copy_(torch::linspace(0, 255, 64).view({64, 1}).expand({64, 96}));
  const auto bytes = simsiam::encode_jpeg(smooth.round().to(torch::kUInt8), 95);
  const auto whole = simsiam::decode_jpeg(bytes).to(torch::kFloat);
  for (int denominator : {2, 4, 8}) {
    INFO(denominator);
    const auto scaled = simsiam::decode_jpeg(bytes, "smooth", 8 / denominator);
    CHECK(scaled.sizes() == torch::IntArrayRef({3, 64 / denominator, 96 / denominator}));
    const auto pooled = torch::avg_pool2d(whole.unsqueeze(0), denominator).squeeze(0);
    CHECK((scaled.to(torch::kFloat) - pooled).abs().mean().item<float>() < 2.0f);
  }
  const auto noisy = simsiam::encode_jpeg(full.view({3, 64, 96}), 90);
  CHECK(simsiam::decode_jpeg(noisy, "x", 1).sizes() == torch::IntArrayRef({3, 8, 12}));
  CHECK(simsiam::decode_jpeg(noisy, "x", 3).sizes() == torch::IntArrayRef({3, 24, 36}));
  CHECK(simsiam::decode_jpeg(noisy, "x", 7).sizes() == torch::IntArrayRef({3, 56, 84}));
  CHECK_THROWS_WITH(simsiam::decode_jpeg(bytes, "smooth", 9),
                    Contains("expected a scale of 1 to 8 eighths, got 9"));
}

TEST_CASE("corrupt, truncated and non-image files fail naming the file", "[data][image][errors]") {
  const auto png = bytes_of("rgb8.png");
  CHECK_THROWS_WITH(simsiam::decode_png(png.substr(0, png.size() - 20), "'cut.png'"),
                    Contains("'cut.png' is truncated"));
  auto flipped = png;
  flipped[45] = static_cast<char>(flipped[45] ^ 0x10);  // inside IDAT's data
  CHECK_THROWS_WITH(simsiam::decode_png(flipped, "'bad.png'"),
                    Contains("'bad.png' is corrupt: the CRC of its IDAT chunk"));
  const auto jpeg = bytes_of("rgb420.jpg");
  CHECK_THROWS_WITH(simsiam::decode_jpeg(jpeg.substr(0, jpeg.size() / 2), "'cut.jpg'"),
                    Contains("'cut.jpg' is truncated"));
  CHECK_THROWS_WITH(simsiam::decode_image("plain text, not pixels", "'notes.JPEG'"),
                    Contains("'notes.JPEG' is not a JPEG or PNG image"));
  CHECK_THROWS_WITH(simsiam::decode_image("", "'empty.JPEG'"),
                    Contains("'empty.JPEG' is not a JPEG or PNG image (it is empty)"));
  CHECK_THROWS_WITH(simsiam::read_image("/nonexistent/x.JPEG"),
                    Contains("cannot open '/nonexistent/x.JPEG': no such file"));
  CHECK_THROWS_WITH(simsiam::encode_png(torch::zeros({2, 4, 4}, torch::kUInt8)),
                    Contains("expected a uint8 image [C, H, W] with C = 1 or 3"));
}
