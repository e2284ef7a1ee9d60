// SPDX-License-Identifier: BSD-3-Clause
// Random augmentation functors: parameter distributions, per-image independence, seeds, errors.
#include "simsiam/augment/transforms.hpp"

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "simsiam/augment/presets.hpp"
#include "support/catch.hpp"
#include "support/fixtures.hpp"

namespace {

namespace A = simsiam::augment;

torch::Generator generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

/// Images whose every pixel differs from its mirror image, so a flip is always visible.
torch::Tensor ramp(int64_t n, int64_t channels = 3, int64_t size = 8) {
  return torch::linspace(0.1, 0.9, size)
      .view({1, 1, 1, size})
      .expand({n, channels, size, size})
      .contiguous();
}

}  // namespace

/// torchvision 0.14 RandomResizedCrop.get_params transcribed one image at a time, with its own
/// random engine: the distribution the batched sampler must reproduce.
std::vector<std::array<double, 4>> reference_boxes(int n, int height, int width, uint32_t seed) {
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::array<double, 4>> out;
  for (int i = 0; i < n; ++i) {
    const double area = height * width;
    bool found = false;
    for (int t = 0; t < 10 && !found; ++t) {
      const double target = area * (0.2 + 0.8 * u(engine));
      const double aspect =
          std::exp(std::log(0.75) + (std::log(4.0 / 3) - std::log(0.75)) * u(engine));
      const double w = std::nearbyint(std::sqrt(target * aspect));
      const double h = std::nearbyint(std::sqrt(target / aspect));
      if (w > 0 && w <= width && h > 0 && h <= height) {
        const double top = std::floor(u(engine) * (height - h + 1));
        const double left = std::floor(u(engine) * (width - w + 1));
        out.push_back({top, left, h, w});
        found = true;
      }
    }
    if (!found) out.push_back({0.0, 0.0, double(height), double(width)});
  }
  return out;
}

TEST_CASE("RandomResizedCrop boxes follow torchvision's distribution", "[augment]") {
  A::RandomResizedCrop crop(224, {0.2, 1.0});
  auto gen = generator(1);
  const int n = 20000, height = 300, width = 400;
  const auto boxes = crop.sample_boxes(n, height, width, gen).to(torch::kDouble);
  const auto top = boxes.select(1, 0), left = boxes.select(1, 1), h = boxes.select(1, 2),
             w = boxes.select(1, 3);
  CHECK(((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width)).all().item<bool>());
  const auto area = h * w / double(height * width);
  const auto ratio = w / h;
  // Rounding h and w to pixels moves the area and ratio by well under 2%.
  CHECK(area.min().item<double>() >= 0.2 * 0.98);
  CHECK(area.max().item<double>() <= 1.0);
  CHECK(ratio.min().item<double>() >= 0.75 * 0.98);
  CHECK(ratio.max().item<double>() <= 4.0 / 3.0 * 1.02);
  // Tries that do not fit are redrawn, so the accepted area and ratio are not uniform: compare the
  // moments with torchvision's algorithm run one image at a time.
  double ref_area = 0, ref_log_ratio = 0, ref_top = 0;
  for (const auto& b : reference_boxes(n, height, width, 99)) {
    ref_area += b[2] * b[3] / double(height * width) / n;
    ref_log_ratio += std::log(b[3] / b[2]) / n;
    ref_top += b[0] / (height - b[2] + 1) / n;
  }
  CHECK(area.mean().item<double>() == Approx(ref_area).margin(0.01));
  CHECK(ratio.log().mean().item<double>() == Approx(ref_log_ratio).margin(0.01));
  CHECK((top / (height - h + 1)).mean().item<double>() == Approx(ref_top).margin(0.01));
}

TEST_CASE("RandomResizedCrop falls back to a ratio-clamped centre crop", "[augment]") {
  // A 1 x 100 strip can never fit a box of ratio <= 4/3 and area >= 20%: every image falls back.
  A::RandomResizedCrop crop(8, {0.2, 1.0});
  auto gen = generator(2);
  const auto boxes = crop.sample_boxes(50, 1, 100, gen);
  // torchvision: in_ratio 100 > 4/3, so h = 1 and w = round(1 * 4/3) = 1, centred.
  CHECK(torch::equal(boxes, torch::tensor({0L, 49L, 1L, 1L}).repeat({50, 1})));
}

TEST_CASE("random functors hit their probabilities over 10k images", "[augment]") {
  const int64_t n = 10000;
  auto gen = generator(3);
  const auto x = torch::rand({n, 3, 2, 2}, gen);
  const auto gray = A::RandomGrayscale(0.2)(x, gen);
  const auto is_gray = (gray.select(1, 0) == gray.select(1, 1)).all(2).all(1);
  CHECK(is_gray.to(torch::kDouble).mean().item<double>() == Approx(0.2).margin(0.02));

  const auto images = ramp(n);
  const auto flipped = A::RandomHorizontalFlip(0.5)(images, gen);
  const auto was_flipped = flipped.ne(images).flatten(1).any(1);
  CHECK(was_flipped.to(torch::kDouble).mean().item<double>() == Approx(0.5).margin(0.02));

  const auto applied = A::RandomApply(A::RandomHorizontalFlip(1.0), 0.8)(images, gen);
  CHECK(applied.ne(images).flatten(1).any(1).to(torch::kDouble).mean().item<double>() ==
        Approx(0.8).margin(0.02));
}

TEST_CASE("ColorJitter draws one factor per image, uniform in [1 - v, 1 + v]", "[augment]") {
  const int64_t n = 10000;
  auto gen = generator(4);
  const auto half = torch::full({n, 3, 1, 1}, 0.5);
  const auto factors = A::ColorJitter(0.4, 0.0, 0.0, 0.0)(half, gen).mean({1, 2, 3}) / 0.5;
  CHECK(factors.min().item<double>() >= 0.6 - 1e-6);
  CHECK(factors.max().item<double>() <= 1.4 + 1e-6);
  CHECK(factors.mean().item<double>() == Approx(1.0).margin(0.01));
  CHECK(factors.std().item<double>() == Approx(0.8 / std::sqrt(12.0)).margin(0.01));
}

TEST_CASE("ColorJitter applies its operations in a random order per image", "[augment]") {
  // Brightness then contrast leaves a constant image's contrast step at its mean (no change);
  // contrast then brightness also: so use a two-level image where the orders differ by clamping.
  const int64_t n = 4000;
  auto gen = generator(5);
  auto x = torch::zeros({n, 3, 1, 2});
  x.select(3, 0).fill_(0.9);
  x.select(3, 1).fill_(0.1);
  const auto out = A::ColorJitter(0.4, 0.4, 0.0, 0.0)(x, gen);
  // Recompute both orders from the drawn factors is not possible from outside, but both orders
  // occur iff some images saturate before the contrast step and others after: with brightness
  // up to 1.4, 0.9 * 1.4 clamps to 1 only when brightness comes first.
  const auto bright_px = out.select(3, 0).select(2, 0).select(1, 0);
  CHECK((bright_px == 1.0).any().item<bool>());
  CHECK((bright_px < 1.0).any().item<bool>());
}

TEST_CASE("same seed, same views, and images in a batch get their own parameters", "[augment]") {
  auto pipeline = A::simsiam_imagenet(32);
  auto g0 = generator(6);
  const auto x = torch::randint(0, 256, {6, 3, 40, 48}, g0, torch::kUInt8);
  auto g1 = generator(7), g2 = generator(7), g3 = generator(8);
  const auto a = pipeline(x, g1), b = pipeline(x, g2), c = pipeline(x, g3);
  CHECK(torch::equal(a, b));
  CHECK_FALSE(torch::equal(a, c));
  // One image repeated: every copy gets a different crop.
  const auto same = x.narrow(0, 0, 1).repeat({6, 1, 1, 1});
  const auto views = pipeline(same, g1);
  for (int64_t i = 1; i < 6; ++i) CHECK_FALSE(torch::equal(views[0], views[i]));
  A::TwoViews<decltype(pipeline)> two(pipeline, 11);
  const auto [v1, v2] = two(x);
  CHECK_FALSE(torch::equal(v1, v2));
  two.seed(11);
  const auto [w1, w2] = two(x);
  CHECK(torch::equal(v1, w1));
  CHECK(torch::equal(v2, w2));
}

TEST_CASE("the ImageNet preset holds the official recipe's parameters", "[augment]") {
  // main_simsiam.py: RandomResizedCrop(224, scale=(0.2, 1.)), RandomApply([ColorJitter(0.4, 0.4,
  // 0.4, 0.1)], p=0.8), RandomGrayscale(p=0.2), RandomApply([GaussianBlur([.1, 2.])], p=0.5),
  // RandomHorizontalFlip(), Normalize(ImageNet mean, std).
  const auto preset = A::simsiam_imagenet();
  const auto& [crop, jitter, gray, blur, flip, normalize] = preset.transforms();
  CHECK(crop.options().size() == 224);
  CHECK(crop.options().scale() == A::Range{0.2, 1.0});
  CHECK(crop.options().ratio() == A::Range{3.0 / 4.0, 4.0 / 3.0});
  CHECK(jitter.p() == 0.8);
  CHECK(jitter.transform().options().brightness() == 0.4);
  CHECK(jitter.transform().options().contrast() == 0.4);
  CHECK(jitter.transform().options().saturation() == 0.4);
  CHECK(jitter.transform().options().hue() == 0.1);
  CHECK(gray.options().p() == 0.2);
  CHECK(blur.p() == 0.5);
  CHECK(blur.transform().options().sigma() == A::Range{0.1, 2.0});
  CHECK(flip.options().p() == 0.5);
  CHECK(normalize.options().mean() == std::vector<double>{0.485, 0.456, 0.406});
  CHECK(normalize.options().std() == std::vector<double>{0.229, 0.224, 0.225});
}

TEST_CASE("presets produce normalised float batches of the requested size", "[augment]") {
  auto gen = generator(9);
  const auto imagenet =
      A::simsiam_imagenet(64)(torch::randint(0, 256, {4, 3, 70, 90}, torch::kUInt8), gen);
  CHECK(imagenet.sizes() == torch::IntArrayRef({4, 3, 64, 64}));
  CHECK(imagenet.scalar_type() == torch::kFloat);
  const std::vector<torch::Tensor> photos{torch::rand({3, 50, 80}), torch::rand({3, 120, 90}),
                                          torch::randint(0, 256, {3, 33, 41}, torch::kUInt8)};
  CHECK(A::simsiam_imagenet(32)(photos, gen).sizes() == torch::IntArrayRef({3, 3, 32, 32}));
  CHECK(A::simsiam_cifar()(torch::rand({5, 3, 32, 32}), gen).sizes() ==
        torch::IntArrayRef({5, 3, 32, 32}));
  const auto fmnist = A::simsiam_grayscale()(torch::rand({5, 1, 28, 28}), gen);
  CHECK(fmnist.sizes() == torch::IntArrayRef({5, 1, 28, 28}));
  CHECK(A::GaussianBlur().kernel_for(224) == 23);
  CHECK(A::GaussianBlur().kernel_for(32) == 3);
  // A chosen output dtype: the crop's, kept through the rest of the recipe; same draws, same
  // views up to float32 rounding.
  const auto u8 = torch::randint(0, 256, {3, 3, 40, 44}, torch::kUInt8);
  auto g1 = generator(13), g2 = generator(13);
  const auto as_float = A::simsiam_cifar(16)(u8, g1);
  const auto [crop, rest] = A::split_crop(A::simsiam_cifar(16));
  const A::Compose doubled(
      A::RandomResizedCrop(A::RandomResizedCropOptions(crop.options()).dtype(torch::kDouble)),
      rest);
  const auto as_double = doubled(u8, g2);
  CHECK(as_double.scalar_type() == torch::kDouble);
  CHECK_TENSOR_NEAR(as_float, as_double, 1e-4);
  CHECK(A::RandomResizedCrop(8, {0.2, 1.0}, {0.75, 4.0 / 3}, torch::kHalf)(u8, g1).scalar_type() ==
        torch::kHalf);
}

TEST_CASE("bad augmentation options fail at construction", "[augment][errors]") {
  CHECK_THROWS_WITH(A::RandomResizedCrop(0), Contains("expected size > 0, got 0"));
  CHECK_THROWS_WITH(A::RandomResizedCrop(32, {1.0, 0.2}),
                    Contains("expected scale (low, high) with 0 <= low <= high, got (1, 0.2)"));
  CHECK_THROWS_WITH(A::RandomResizedCrop(32, {0.2, 1.0}, {1.5, 0.5}),
                    Contains("expected ratio (low, high)"));
  CHECK_THROWS_WITH(A::RandomGrayscale(1.5), Contains("expected a probability in [0, 1], got 1.5"));
  CHECK_THROWS_WITH(A::RandomApply(A::RandomHorizontalFlip(), -0.1),
                    Contains("expected a probability in [0, 1], got -0.1"));
  CHECK_THROWS_WITH(A::ColorJitter(0.4, 0.4, 0.4, 0.6),
                    Contains("expected hue in [0, 0.5], got 0.6"));
  CHECK_THROWS_WITH(A::GaussianBlur({2.0, 0.1}), Contains("expected sigma (low, high)"));
  CHECK_THROWS_WITH(A::GaussianBlur(A::GaussianBlurOptions().kernel_size(4)),
                    Contains("expected an odd kernel size (or 0 for 10% of the image), got 4"));
  CHECK_THROWS_WITH(A::RandomResizedCrop(A::RandomResizedCropOptions(32).ratio({2.0, 1.0})),
                    Contains("expected ratio (low, high)"));
  CHECK_THROWS_WITH(A::Normalize({0.5, 0.5}, {0.2}),
                    Contains("expected as many stds as means (at least one), got 2 means and 1"));
  CHECK_THROWS_WITH(A::Normalize({0.5}, {0.0}), Contains("expected positive stds, got 0"));
  auto gen = generator(0);
  CHECK_THROWS_WITH(A::RandomResizedCrop(8)(torch::rand({2, 4, 8, 8}), gen),
                    Contains("expected images [B, C, H, W] with C = 1 or 3, got [2, 4, 8, 8]"));
  CHECK_THROWS_WITH(A::RandomResizedCrop(8, {0.2, 1.0}, {0.75, 1.33}, torch::kLong),
                    Contains("expected a floating-point or uint8 output dtype, got Long"));
}

TEST_CASE("ToFloat turns uint8 into [0, 1] and leaves floating-point images alone", "[augment]") {
  auto gen = generator(0);
  const auto u8 = torch::tensor({0, 51, 255}, torch::kByte).view({1, 1, 1, 3});
  CHECK(torch::equal(A::ToFloat()(u8, gen), torch::tensor({0.0f, 0.2f, 1.0f}).view({1, 1, 1, 3})));
  CHECK(A::ToFloat(torch::kDouble)(u8, gen).scalar_type() == torch::kDouble);
  const auto x = torch::rand({1, 1, 2, 2});
  CHECK(A::ToFloat()(x, gen).is_same(x));
  CHECK_THROWS_WITH(A::ToFloat(torch::kByte),
                    Contains("expected a floating-point dtype, got Byte"));
  CHECK_THROWS_WITH(A::ToFloat()(u8.to(torch::kInt), gen),
                    Contains("expected uint8 or floating-point images, got Int"));
}

TEST_CASE("ColorJitter's fused CPU path equals its tensor path for the same draws", "[augment]") {
  const A::ColorJitter jitter(0.4, 0.4, 0.4, 0.1);
  auto gen = generator(31);
  const auto x = torch::rand({12, 3, 17, 19}, gen);
  auto g1 = generator(5), g2 = generator(5);
  const auto fused = jitter(x, g1);                       // float32: per image, in place
  const auto generic = jitter(x.to(torch::kDouble), g2);  // float64: grouped tensor operations
  CHECK_TENSOR_NEAR(fused, generic, 1e-5);
  auto g3 = generator(5), g4 = generator(5);
  const A::RandomGrayscale gray(0.5);
  CHECK_TENSOR_NEAR(gray(x, g3), gray(x.to(torch::kDouble), g4), 1e-6);
}

TEST_CASE("TwoViews on CPU chunks: same views for a seed at any thread count", "[augment]") {
  const auto pipeline = A::simsiam_imagenet(24);
  auto g0 = generator(41);
  const auto x = torch::randint(0, 256, {10, 3, 30, 34}, g0, torch::kUInt8);
  std::vector<torch::Tensor> list;
  for (int64_t i = 0; i < 10; ++i) list.push_back(x[i].narrow(2, 0, 20 + i));  // sizes differ
  const int threads = torch::get_num_threads();
  for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{0}}) {
    const A::TwoViews<decltype(pipeline)> two(pipeline, A::TwoViewsOptions(0).cpu_chunk(chunk));
    torch::set_num_threads(1);
    auto g1 = generator(7);
    const auto [a1, a2] = two(x, g1);
    const auto [l1, l2] = two(list, g1);
    torch::set_num_threads(2);
    auto g2 = generator(7);
    const auto [b1, b2] = two(x, g2);
    const auto [m1, m2] = two(list, g2);
    CHECK(torch::equal(a1, b1));
    CHECK(torch::equal(a2, b2));
    CHECK(torch::equal(l1, m1));
    CHECK(torch::equal(l2, m2));
    CHECK(a1.sizes() == torch::IntArrayRef({10, 3, 24, 24}));
    CHECK(l2.sizes() == torch::IntArrayRef({10, 3, 24, 24}));
    // One image repeated: every copy, in every chunk, gets its own views.
    const auto same = x.narrow(0, 0, 1).repeat({10, 1, 1, 1});
    const auto [s1, s2] = two(same, g1);
    for (int64_t i = 1; i < 10; ++i) CHECK_FALSE(torch::equal(s1[0], s1[i]));
    CHECK_FALSE(torch::equal(s1, s2));
  }
  torch::set_num_threads(threads);
  // kAutoChunk: one ImageNet-size image per chunk; CIFAR-size batches whole.
  CHECK(A::detail::auto_chunk(torch::empty({4, 3, 350, 400}, torch::kUInt8)) == 1);
  CHECK(A::detail::auto_chunk(torch::empty({512, 3, 32, 32}, torch::kUInt8)) == 0);
  CHECK(A::detail::auto_chunk(torch::empty({8, 3, 96, 96}, torch::kUInt8)) == 9);
  CHECK_THROWS_WITH(A::TwoViews<decltype(pipeline)>(pipeline, A::TwoViewsOptions(0).cpu_chunk(-2)),
                    Contains("expected cpu_chunk >= 0 (0 = whole batch)"));
}
