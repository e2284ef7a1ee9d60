// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Random augmentation functors over whole batches, each image with its own parameters.
///
/// A functor is any type with `torch::Tensor operator()(const torch::Tensor& images,
/// torch::Generator& generator) const`. Parameters are drawn on the CPU from `generator` (so a
/// seed reproduces a batch exactly, on any device) with the distributions of torchvision's
/// transforms, then applied to the batch on its own device with `augment::functional`.
/// `Compose<...>` chains functors without virtual calls; `TwoViews` makes SimSiam's pair.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "simsiam/augment/functional.hpp"
#include "simsiam/detail/seed.hpp"

namespace simsiam::augment {

namespace detail {

/// uniform [B] in [low, high) drawn from `generator` on the CPU (float64, then used as needed).
inline torch::Tensor uniform(int64_t n, double low, double high, torch::Generator& generator) {
  return torch::rand({n}, generator, torch::kDouble) * (high - low) + low;
}

/// Bernoulli(p) mask [B] (bool) on the CPU.
inline torch::Tensor coin(int64_t n, double p, torch::Generator& generator) {
  return torch::rand({n}, generator, torch::kDouble) < p;
}

inline void check_probability(const char* where, double p) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, where, ": expected a probability in [0, 1], got ", p);
}

inline void check_range(const char* where, const char* what, std::pair<double, double> range,
                        double lowest) {
  TORCH_CHECK(range.first >= lowest && range.first <= range.second, where, ": expected ", what,
              " (low, high) with ", lowest, " <= low <= high, got (", range.first, ", ",
              range.second, ")");
}

}  // namespace detail

/// (low, high) bounds of a uniformly drawn parameter.
using Range = std::pair<double, double>;

/// Options of `RandomResizedCrop`; the defaults are torchvision's.
struct RandomResizedCropOptions {
  /* implicit */ RandomResizedCropOptions(int64_t size) : size_(size) {}  // NOLINT

  /// Side of the square output.
  TORCH_ARG(int64_t, size);
  /// Range of the crop's area as a fraction of the image's.
  TORCH_ARG(Range, scale) = Range{0.08, 1.0};
  /// Range of the crop's aspect ratio (width / height), drawn log-uniformly.
  TORCH_ARG(Range, ratio) = Range{3.0 / 4.0, 4.0 / 3.0};
  /// Type of the output (and so of the rest of a pipeline): float32 by default, e.g. half on
  /// CUDA; or uint8 for uint8 images, values rounded as PIL's resize keeps them, so that crops
  /// made on the CPU travel to a GPU in a quarter of the bytes (the device pipeline then starts
  /// with `ToFloat`). The fused CPU loops serve float32 and uint8; other types take the tensor
  /// path.
  TORCH_ARG(torch::ScalarType, dtype) = torch::kFloat;

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    constexpr const char* kWhere = "simsiam::augment::RandomResizedCrop";
    TORCH_CHECK(size() > 0, kWhere, ": expected size > 0, got ", size());
    TORCH_CHECK(c10::isFloatingType(dtype()) || dtype() == torch::kByte, kWhere,
                ": expected a floating-point or uint8 output dtype, got ", dtype());
    detail::check_range(kWhere, "scale", scale(), 0.0);
    TORCH_CHECK(scale().second > 0.0, kWhere, ": expected scale high > 0");
    detail::check_range(kWhere, "ratio", ratio(), 1e-12);
  }
};

/// torchvision's RandomResizedCrop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio),
/// 10 tries per image, else a centre crop clamped to the ratio range; then a bilinear resize to
/// size x size. Takes uint8 or float [B, C, H, W] (or a list of images of different sizes) and
/// returns [B, C, size, size] in [0, 1] as `dtype` (float32 by default; uint8 in 0-255).
class RandomResizedCrop {
 public:
  explicit RandomResizedCrop(const RandomResizedCropOptions& options)
      : options_((options.check(), options)) {}
  /// torchvision's argument order.
  explicit RandomResizedCrop(int64_t size, Range scale = {0.08, 1.0},
                             Range ratio = {3.0 / 4.0, 4.0 / 3.0},
                             torch::ScalarType dtype = torch::kFloat)
      : RandomResizedCrop(RandomResizedCropOptions(size).scale(scale).ratio(ratio).dtype(dtype)) {}

  const RandomResizedCropOptions& options() const { return options_; }

  /// Boxes (top, left, height, width) for `n` images of height x width, int64 [n, 4] on the CPU.
  torch::Tensor sample_boxes(int64_t n, int64_t height, int64_t width,
                             torch::Generator& generator) const {
    constexpr int64_t kTries = 10;
    const double area = static_cast<double>(height * width);
    const auto [scale, ratio] = std::pair(options_.scale(), options_.ratio());
    const auto target =
        area * (torch::rand({n, kTries}, generator, torch::kDouble) * (scale.second - scale.first) +
                scale.first);
    const double log_lo = std::log(ratio.first), log_hi = std::log(ratio.second);
    const auto aspect =
        (torch::rand({n, kTries}, generator, torch::kDouble) * (log_hi - log_lo) + log_lo).exp();
    const auto w = (target * aspect).sqrt().round();
    const auto h = (target / aspect).sqrt().round();
    const auto fits = (w > 0) & (w <= width) & (h > 0) & (h <= height);
    const auto u_top = torch::rand({n, kTries}, generator, torch::kDouble);
    const auto u_left = torch::rand({n, kTries}, generator, torch::kDouble);
    // Centre fallback (torchvision): whole image, clamped to the ratio range.
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    double fw = width, fh = height;
    if (in_ratio < ratio.first) {
      fh = std::round(fw / ratio.first);
    } else if (in_ratio > ratio.second) {
      fw = std::round(fh * ratio.second);
    }
    auto boxes = torch::empty({n, 4}, torch::kLong);
    auto out = boxes.accessor<int64_t, 2>();
    const auto fits_a = fits.accessor<bool, 2>();
    const auto w_a = w.accessor<double, 2>(), h_a = h.accessor<double, 2>();
    const auto top_a = u_top.accessor<double, 2>(), left_a = u_left.accessor<double, 2>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t t = 0;
      while (t < kTries && !fits_a[i][t]) ++t;
      if (t < kTries) {
        const auto bh = static_cast<int64_t>(h_a[i][t]), bw = static_cast<int64_t>(w_a[i][t]);
        // torch.randint(0, H - h + 1) drawn as floor(u * (H - h + 1)).
        out[i][0] =
            std::min<int64_t>(static_cast<int64_t>(top_a[i][t] * (height - bh + 1)), height - bh);
        out[i][1] =
            std::min<int64_t>(static_cast<int64_t>(left_a[i][t] * (width - bw + 1)), width - bw);
        out[i][2] = bh;
        out[i][3] = bw;
      } else {
        const auto bh = static_cast<int64_t>(fh), bw = static_cast<int64_t>(fw);
        out[i][0] = (height - bh) / 2;
        out[i][1] = (width - bw) / 2;
        out[i][2] = bh;
        out[i][3] = bw;
      }
    }
    return boxes;
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    TORCH_CHECK(
        images.defined() && images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
        "simsiam::augment::RandomResizedCrop: expected images [B, C, H, W] with C = 1 or 3, "
        "got ",
        simsiam::detail::shape_string(images));
    const auto boxes = sample_boxes(images.size(0), images.size(2), images.size(3), generator);
    return functional::resized_crop(images, boxes, options_.size(), options_.dtype());
  }

  /// Images of different sizes (e.g. decoded JPEGs), each [C, H_i, W_i]: one fixed-size batch.
  torch::Tensor operator()(const std::vector<torch::Tensor>& images,
                           torch::Generator& generator) const {
    TORCH_CHECK(!images.empty(),
                "simsiam::augment::RandomResizedCrop: expected at least one image");
    std::vector<torch::Tensor> crops;
    crops.reserve(images.size());
    for (const auto& image : images) {
      TORCH_CHECK(image.defined() && image.dim() == 3,
                  "simsiam::augment::RandomResizedCrop: expected each image as [C, H, W], got ",
                  simsiam::detail::shape_string(image));
      crops.push_back((*this)(image.unsqueeze(0), generator));
    }
    return crops.size() == 1 ? crops.front() : torch::cat(crops);
  }

 private:
  RandomResizedCropOptions options_;
};

/// Options of `ColorJitter`: the strength of each operation, 0 to leave it out.
struct ColorJitterOptions {
  ColorJitterOptions() = default;
  /// torchvision's argument order.
  ColorJitterOptions(double brightness, double contrast, double saturation, double hue)
      : brightness_(brightness), contrast_(contrast), saturation_(saturation), hue_(hue) {}

  /// Brightness factor ~ U[max(0, 1 - v), 1 + v].
  TORCH_ARG(double, brightness) = 0.0;
  /// Contrast factor ~ U[max(0, 1 - v), 1 + v].
  TORCH_ARG(double, contrast) = 0.0;
  /// Saturation factor ~ U[max(0, 1 - v), 1 + v].
  TORCH_ARG(double, saturation) = 0.0;
  /// Hue shift ~ U[-v, v], v in [0, 0.5].
  TORCH_ARG(double, hue) = 0.0;

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    TORCH_CHECK(brightness() >= 0 && contrast() >= 0 && saturation() >= 0,
                "simsiam::augment::ColorJitter: "
                "expected non-negative brightness, contrast and saturation, got ",
                brightness(), ", ", contrast(), ", ", saturation());
    TORCH_CHECK(hue() >= 0 && hue() <= 0.5,
                "simsiam::augment::ColorJitter: expected hue in [0, 0.5], got ", hue());
  }
};

/// torchvision's ColorJitter: brightness, contrast, saturation factors ~ U[max(0, 1 - v), 1 + v],
/// hue shift ~ U[-h, h], applied in a random order drawn per image. A zero strength skips that
/// operation (and draws nothing for it).
class ColorJitter {
 public:
  explicit ColorJitter(const ColorJitterOptions& options) : options_((options.check(), options)) {}
  /// torchvision's argument order.
  ColorJitter(double brightness, double contrast, double saturation, double hue)
      : ColorJitter(ColorJitterOptions(brightness, contrast, saturation, hue)) {}

  const ColorJitterOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::ColorJitter", images);
    const int64_t n = images.size(0);
    // A uniformly random order per image: argsort of i.i.d. uniforms (as torch.randperm(4)).
    const auto order = torch::rand({n, 4}, generator, torch::kDouble).argsort(/*dim=*/int64_t{1});
    const auto factor = [&](double v) {
      return detail::uniform(n, std::max(0.0, 1.0 - v), 1.0 + v, generator);
    };
    const double strengths[4] = {options_.brightness(), options_.contrast(), options_.saturation(),
                                 options_.hue()};
    const torch::Tensor factors[4] = {factor(strengths[0]), factor(strengths[1]),
                                      factor(strengths[2]),
                                      detail::uniform(n, -strengths[3], strengths[3], generator)};
    if (functional::detail::cpu_float(images)) return apply_cpu(images, order, factors, strengths);
    auto out = images.clone();
    for (int64_t position = 0; position < 4; ++position) {
      for (int64_t op = 0; op < 4; ++op) {
        if (strengths[op] == 0.0) continue;
        const auto chosen = order.select(1, position).eq(op).nonzero().flatten();
        if (chosen.numel() == 0) continue;
        const auto index = functional::detail::to_device(chosen, images.device(), torch::kLong);
        const auto subset = out.index_select(0, index);
        const auto f = factors[op].index_select(0, chosen);
        torch::Tensor changed;
        switch (op) {
          case 0:
            changed = functional::adjust_brightness(subset, f);
            break;
          case 1:
            changed = functional::adjust_contrast(subset, f);
            break;
          case 2:
            changed = functional::adjust_saturation(subset, f);
            break;
          default:
            changed = functional::adjust_hue(subset, f);
            break;
        }
        out.index_copy_(0, index, changed);
      }
    }
    return out;
  }

 private:
  ColorJitterOptions options_;

  /// Each image through its four operations in its order, in place and in cache (CPU float32).
  static torch::Tensor apply_cpu(const torch::Tensor& images, const torch::Tensor& order,
                                 const torch::Tensor (&factors)[4], const double (&strengths)[4]) {
    namespace FD = functional::detail;
    const int64_t n = images.size(0), channels = images.size(1),
                  plane = images.size(2) * images.size(3);
    const auto ops = order.accessor<int64_t, 2>();
    const std::vector<float> f[4] = {
        FD::factor_values(factors[0], n), FD::factor_values(factors[1], n),
        FD::factor_values(factors[2], n), FD::factor_values(factors[3], n)};
    return FD::map_images_cpu(images, [&](float* x, int64_t i) {
      for (int64_t position = 0; position < 4; ++position) {
        const int64_t op = ops[i][position];
        if (strengths[op] == 0.0) continue;
        if (op == 0) FD::brightness_image(x, channels, plane, f[0][i]);
        if (op == 1) FD::contrast_image(x, channels, plane, f[1][i]);
        if (op == 2 && channels == 3) FD::saturation_image(x, plane, f[2][i]);
        if (op == 3 && channels == 3) FD::hue_image(x, plane, f[3][i]);
      }
    });
  }
};

/// Options of `RandomGrayscale`.
struct RandomGrayscaleOptions {
  /* implicit */ RandomGrayscaleOptions(double p = 0.1) : p_(p) {}  // NOLINT

  /// Probability that an image is made grey.
  TORCH_ARG(double, p);

 public:
  void check() const { detail::check_probability("simsiam::augment::RandomGrayscale", p()); }
};

/// torchvision's RandomGrayscale: each image becomes its luma (in all channels) with probability p.
class RandomGrayscale {
 public:
  explicit RandomGrayscale(const RandomGrayscaleOptions& options = {})
      : options_((options.check(), options)) {}

  const RandomGrayscaleOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::RandomGrayscale", images);
    const auto coins = detail::coin(images.size(0), options_.p(), generator);
    if (functional::detail::cpu_float(images)) {
      if (images.size(1) == 1) return images;
      const auto flags = coins.contiguous();
      const bool* chosen = flags.data_ptr<bool>();
      const int64_t plane = images.size(2) * images.size(3);
      return functional::detail::map_images_cpu(images, [&](float* x, int64_t n) {
        if (chosen[n]) functional::detail::grayscale_image(x, plane);
      });
    }
    const auto chosen = functional::detail::to_device(coins, images.device(), torch::kBool);
    const auto gray = functional::rgb_to_grayscale(images, images.size(1));
    return torch::where(chosen.view({-1, 1, 1, 1}), gray, images);
  }

 private:
  RandomGrayscaleOptions options_;
};

/// Options of `GaussianBlur`; the defaults are SimSiam's (MoCo v2's).
struct GaussianBlurOptions {
  /// Range of the per-image standard deviation.
  TORCH_ARG(Range, sigma) = Range{0.1, 2.0};
  /// Odd kernel side, or 0 for the odd number nearest 10% of the image side.
  TORCH_ARG(int64_t, kernel_size) = 0;

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    detail::check_range("simsiam::augment::GaussianBlur", "sigma", sigma(), 1e-12);
    TORCH_CHECK(kernel_size() == 0 || (kernel_size() > 0 && kernel_size() % 2 == 1),
                "simsiam::augment::GaussianBlur: expected an odd kernel size (or 0 for 10% of the "
                "image), got ",
                kernel_size());
  }
};

/// Gaussian blur with sigma ~ U[sigma_min, sigma_max] per image (SimSiam/MoCo v2: [0.1, 2.0]).
/// The kernel size is `kernel_size`, or when 0 the odd number nearest 10% of the image side (23
/// at 224), the rule of SimCLR/BYOL's tensor implementations. The official code blurs with PIL's
/// ImageFilter.GaussianBlur(radius=sigma), an approximation of the same Gaussian.
class GaussianBlur {
 public:
  explicit GaussianBlur(const GaussianBlurOptions& options = {})
      : options_((options.check(), options)) {}
  explicit GaussianBlur(Range sigma, int64_t kernel_size = 0)
      : GaussianBlur(GaussianBlurOptions().sigma(sigma).kernel_size(kernel_size)) {}

  const GaussianBlurOptions& options() const { return options_; }

  /// The kernel size used for images of side `side`.
  int64_t kernel_for(int64_t side) const {
    if (options_.kernel_size() > 0) return options_.kernel_size();
    return 2 * static_cast<int64_t>(std::lround(0.1 * static_cast<double>(side) / 2.0 - 0.5)) + 1;
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::GaussianBlur", images);
    const auto [low, high] = options_.sigma();
    const auto sigmas = detail::uniform(images.size(0), low, high, generator);
    return functional::gaussian_blur(images, kernel_for(std::min(images.size(2), images.size(3))),
                                     sigmas);
  }

 private:
  GaussianBlurOptions options_;
};

/// Options of `RandomHorizontalFlip`.
struct RandomHorizontalFlipOptions {
  /* implicit */ RandomHorizontalFlipOptions(double p = 0.5) : p_(p) {}  // NOLINT

  /// Probability that an image is mirrored.
  TORCH_ARG(double, p);

 public:
  void check() const { detail::check_probability("simsiam::augment::RandomHorizontalFlip", p()); }
};

/// torchvision's RandomHorizontalFlip: each image mirrored with probability p.
class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(const RandomHorizontalFlipOptions& options = {})
      : options_((options.check(), options)) {}

  const RandomHorizontalFlipOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    return functional::horizontal_flip(images,
                                       detail::coin(images.size(0), options_.p(), generator));
  }

 private:
  RandomHorizontalFlipOptions options_;
};

/// Options of `Normalize`: one mean and one standard deviation per channel.
struct NormalizeOptions {
  NormalizeOptions(std::vector<double> mean, std::vector<double> std)
      : mean_(std::move(mean)), std_(std::move(std)) {}

  TORCH_ARG(std::vector<double>, mean);
  TORCH_ARG(std::vector<double>, std);

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    constexpr const char* kWhere = "simsiam::augment::Normalize";
    TORCH_CHECK(!mean().empty() && mean().size() == std().size(), kWhere,
                ": expected as many stds as means (at least one), got ", mean().size(),
                " means and ", std().size(), " stds");
    for (double s : std()) TORCH_CHECK(s > 0, kWhere, ": expected positive stds, got ", s);
  }
};

/// uint8 images to floating point in [0, 1] (x / 255, torchvision's
/// `ConvertImageDtype(torch.float)`); floating-point images pass unchanged. Draws nothing: the
/// first step of a device pipeline fed uint8 crops.
class ToFloat {
 public:
  explicit ToFloat(torch::ScalarType dtype = torch::kFloat) : dtype_(dtype) {
    TORCH_CHECK(c10::isFloatingType(dtype), "simsiam::augment::ToFloat: expected a floating-point ",
                "dtype, got ", dtype);
  }
  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& /*generator*/) const {
    if (images.is_floating_point()) return images;
    TORCH_CHECK(images.scalar_type() == torch::kByte,
                "simsiam::augment::ToFloat: expected uint8 or floating-point images, got ",
                images.scalar_type());
    return images.to(dtype_).div_(255.0);
  }

 private:
  torch::ScalarType dtype_;
};

/// torchvision's Normalize: (x - mean) / std per channel. Draws nothing.
class Normalize {
 public:
  explicit Normalize(const NormalizeOptions& options) : options_((options.check(), options)) {}
  Normalize(std::vector<double> mean, std::vector<double> std)
      : Normalize(NormalizeOptions(std::move(mean), std::move(std))) {}

  const NormalizeOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& /*generator*/) const {
    return functional::normalize(images, options_.mean(), options_.std());
  }

 private:
  NormalizeOptions options_;
};

/// torchvision's RandomApply: applies `transform` to each image with probability p (the chosen
/// images go through it together, each with its own parameters).
template <class Transform>
class RandomApply {
 public:
  RandomApply(Transform transform, double p) : transform_(std::move(transform)), p_(p) {
    detail::check_probability("simsiam::augment::RandomApply", p);
  }

  const Transform& transform() const { return transform_; }
  /// Probability that an image goes through the transform.
  double p() const { return p_; }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    const auto chosen = detail::coin(images.size(0), p_, generator).nonzero().flatten();
    if (chosen.numel() == 0) return images;
    if (chosen.numel() == images.size(0)) return transform_(images, generator);  // no gather
    const auto index = functional::detail::to_device(chosen, images.device(), torch::kLong);
    return images.index_copy(0, index, transform_(images.index_select(0, index), generator));
  }

 private:
  Transform transform_;
  double p_;
};

/// Applies its functors in order (torchvision's Compose), resolved at compile time.
template <class... Transforms>
class Compose {
 public:
  explicit Compose(Transforms... transforms) : transforms_(std::move(transforms)...) {}

  /// The functors, in the order they run.
  const std::tuple<Transforms...>& transforms() const { return transforms_; }

  torch::Tensor operator()(torch::Tensor images, torch::Generator& generator) const {
    std::apply([&](const auto&... t) { ((images = t(images, generator)), ...); }, transforms_);
    return images;
  }

  /// Images of different sizes: the first functor (a crop) makes the batch, the rest follow.
  torch::Tensor operator()(const std::vector<torch::Tensor>& images,
                           torch::Generator& generator) const {
    return std::apply(
        [&](const auto& first, const auto&... rest) {
          auto batch = first(images, generator);
          ((batch = rest(batch, generator)), ...);
          return batch;
        },
        transforms_);
  }

 private:
  std::tuple<Transforms...> transforms_;
};

/// The crop of a preset (its first functor) and the rest, for a source that crops
/// while decoding (`FolderSource`).
template <class First, class... Rest>
std::pair<First, Compose<Rest...>> split_crop(const Compose<First, Rest...>& p) {
  return std::apply(
      [](const First& first, const Rest&... rest) {
        return std::make_pair(first, Compose<Rest...>(rest...));
      },
      p.transforms());
}

/// How `TwoViews` runs a pipeline.
struct TwoViewsOptions {
  /// `cpu_chunk` value that picks the chunk size from the image size (see below).
  static constexpr int64_t kAutoChunk = -1;

  /* implicit */ TwoViewsOptions(uint64_t seed = 0) : seed_(seed) {}  // NOLINT

  /// Seed of the owned generator (used by calls that pass none).
  TORCH_ARG(uint64_t, seed);
  /// On the CPU, a batch larger than this is cut into chunks of `cpu_chunk` images that go
  /// through the whole pipeline (both views) one chunk at a time, in parallel over LibTorch's
  /// threads: a chunk's intermediate images stay in cache instead of streaming every operation
  /// over the whole batch. Each chunk draws from its own generator seeded from one number drawn
  /// per call, so a seed gives the same views whatever the thread count. 0 processes the batch
  /// whole (as on other devices, where chunking never applies). `kAutoChunk` keeps about 1 MiB
  /// of float32 input per chunk (one image at ImageNet sizes) and takes small images (CIFAR) as
  /// a whole batch, where per-chunk overhead would dominate.
  TORCH_ARG(int64_t, cpu_chunk) = kAutoChunk;

 public:
  /// Fails with a message naming the first bad setting.
  void check() const {
    TORCH_CHECK(cpu_chunk() >= kAutoChunk,
                "simsiam::augment::TwoViews: expected cpu_chunk >= 0 (0 = whole batch) or "
                "TwoViewsOptions::kAutoChunk, got ",
                cpu_chunk());
  }
};

namespace detail {

inline int64_t batch_size(const torch::Tensor& images) { return images.size(0); }
inline int64_t batch_size(const std::vector<torch::Tensor>& images) {
  return static_cast<int64_t>(images.size());
}
inline bool on_cpu(const torch::Tensor& images) { return images.device().is_cpu(); }
inline bool on_cpu(const std::vector<torch::Tensor>& images) {
  return std::all_of(images.begin(), images.end(),
                     [](const torch::Tensor& image) { return image.device().is_cpu(); });
}
inline int64_t image_values(const torch::Tensor& images) {
  return images.size(0) > 0 ? images.numel() / images.size(0) : 0;
}
inline int64_t image_values(const std::vector<torch::Tensor>& images) {
  return images.empty() ? 0 : images.front().numel();
}

/// The chunk size `TwoViewsOptions::kAutoChunk` stands for (0: the whole batch).
template <class Images>
int64_t auto_chunk(const Images& images) {
  constexpr int64_t kBudget = int64_t{1} << 20, kWholeBatchFrom = 64;
  const int64_t bytes = std::max<int64_t>(1, image_values(images) * int64_t{sizeof(float)});
  const int64_t chunk = std::max<int64_t>(1, kBudget / bytes);
  return chunk >= kWholeBatchFrom ? 0 : chunk;
}

inline torch::Tensor slice(const torch::Tensor& images, int64_t begin, int64_t end) {
  return images.slice(0, begin, end);
}
inline std::vector<torch::Tensor> slice(const std::vector<torch::Tensor>& images, int64_t begin,
                                        int64_t end) {
  return {images.begin() + begin, images.begin() + end};
}

}  // namespace detail

/// Two independently augmented views of the same batch, the input of SimSiam. Owns a CPU
/// generator (seeded) for calls that do not pass one. See `TwoViewsOptions` for how CPU
/// batches are processed.
template <class Pipeline>
class TwoViews {
 public:
  explicit TwoViews(Pipeline pipeline, uint64_t seed = 0)
      : TwoViews(std::move(pipeline), TwoViewsOptions(seed)) {}

  TwoViews(Pipeline pipeline, TwoViewsOptions options)
      : pipeline_(std::move(pipeline)),
        options_((options.check(), options)),
        generator_(at::detail::createCPUGenerator(options.seed())) {}

  /// (view 1, view 2) of `images`, parameters drawn from `generator`.
  template <class Images>
  std::pair<torch::Tensor, torch::Tensor> operator()(const Images& images,
                                                     torch::Generator& generator) const {
    const int64_t n = detail::batch_size(images);
    const int64_t chunk = options_.cpu_chunk() == TwoViewsOptions::kAutoChunk
                              ? detail::auto_chunk(images)
                              : options_.cpu_chunk();
    if (chunk == 0 || n <= chunk || !detail::on_cpu(images)) {
      auto first = pipeline_(images, generator);
      auto second = pipeline_(images, generator);
      return {std::move(first), std::move(second)};
    }
    const auto base = static_cast<uint64_t>(
        torch::randint(0, std::numeric_limits<int64_t>::max(), {1}, generator, torch::kLong)
            .item<int64_t>());
    const int64_t chunks = (n + chunk - 1) / chunk;
    torch::Tensor first, second;  // allocated after chunk 0 shows the output's shape and type
    const auto run_chunk = [&](int64_t c) {
      auto chunk_generator = at::detail::createCPUGenerator(simsiam::detail::mix_seed(base, c));
      const int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      const auto part = detail::slice(images, begin, end);
      auto view1 = pipeline_(part, chunk_generator);
      auto view2 = pipeline_(part, chunk_generator);
      if (c == 0) {
        auto sizes = view1.sizes().vec();
        sizes[0] = n;
        first = torch::empty(sizes, view1.options());
        second = torch::empty(sizes, view2.options());
      }
      first.slice(0, begin, end).copy_(view1);  // while the chunk is still in cache
      second.slice(0, begin, end).copy_(view2);
    };
    run_chunk(0);
    // Chunks cost different amounts (a blurred image costs more), so threads take the next chunk
    // as they finish one rather than a fixed share.
    std::atomic<int64_t> next{1};
    at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), chunks - 1), 1,
                     [&](int64_t /*begin*/, int64_t /*end*/) {
                       for (int64_t c = next++; c < chunks; c = next++) run_chunk(c);
                     });
    return {std::move(first), std::move(second)};
  }

  /// (view 1, view 2) with the owned generator.
  template <class Images>
  std::pair<torch::Tensor, torch::Tensor> operator()(const Images& images) {
    return (*this)(images, generator_);
  }

  /// Reseeds the owned generator.
  void seed(uint64_t seed) { generator_.set_current_seed(seed); }

  const Pipeline& pipeline() const { return pipeline_; }
  const TwoViewsOptions& options() const { return options_; }

 private:
  Pipeline pipeline_;
  TwoViewsOptions options_;
  torch::Generator generator_;
};

}  // namespace simsiam::augment
