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

#include <cmath>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "simsiam/augment/functional.hpp"

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

/// torchvision's RandomResizedCrop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio),
/// 10 tries per image, else a centre crop clamped to the ratio range; then a bilinear resize to
/// size x size. Takes uint8 or float [B, C, H, W] (or a list of images of different sizes) and
/// returns float [B, C, size, size] in [0, 1].
struct RandomResizedCrop {
  int64_t size;
  std::pair<double, double> scale{0.08, 1.0};
  std::pair<double, double> ratio{3.0 / 4.0, 4.0 / 3.0};

  RandomResizedCrop(int64_t size, std::pair<double, double> scale = {0.08, 1.0},
                    std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0})
      : size(size), scale(scale), ratio(ratio) {
    constexpr const char* kWhere = "simsiam::augment::RandomResizedCrop";
    TORCH_CHECK(size > 0, kWhere, ": expected size > 0, got ", size);
    detail::check_range(kWhere, "scale", scale, 0.0);
    TORCH_CHECK(scale.second > 0.0, kWhere, ": expected scale high > 0");
    detail::check_range(kWhere, "ratio", ratio, 1e-12);
  }

  /// Boxes (top, left, height, width) for `n` images of height x width, int64 [n, 4] on the CPU.
  torch::Tensor sample_boxes(int64_t n, int64_t height, int64_t width,
                             torch::Generator& generator) const {
    constexpr int64_t kTries = 10;
    const double area = static_cast<double>(height * width);
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
    return functional::resized_crop(images, boxes, size);
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
    return torch::cat(crops);
  }
};

/// torchvision's ColorJitter: brightness, contrast, saturation factors ~ U[max(0, 1 - v), 1 + v],
/// hue shift ~ U[-h, h], applied in a random order drawn per image. A zero strength skips that
/// operation (and draws nothing for it).
struct ColorJitter {
  double brightness = 0.0, contrast = 0.0, saturation = 0.0, hue = 0.0;

  ColorJitter(double brightness, double contrast, double saturation, double hue)
      : brightness(brightness), contrast(contrast), saturation(saturation), hue(hue) {
    TORCH_CHECK(brightness >= 0 && contrast >= 0 && saturation >= 0,
                "simsiam::augment::ColorJitter: "
                "expected non-negative brightness, contrast and saturation, got ",
                brightness, ", ", contrast, ", ", saturation);
    TORCH_CHECK(hue >= 0 && hue <= 0.5,
                "simsiam::augment::ColorJitter: expected hue in [0, 0.5], got ", hue);
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::ColorJitter", images);
    const int64_t n = images.size(0);
    // A uniformly random order per image: argsort of i.i.d. uniforms (as torch.randperm(4)).
    const auto order = torch::rand({n, 4}, generator, torch::kDouble).argsort(/*dim=*/int64_t{1});
    const auto factor = [&](double v) {
      return detail::uniform(n, std::max(0.0, 1.0 - v), 1.0 + v, generator);
    };
    const torch::Tensor factors[4] = {factor(brightness), factor(contrast), factor(saturation),
                                      detail::uniform(n, -hue, hue, generator)};
    const double strengths[4] = {brightness, contrast, saturation, hue};
    auto out = images.clone();
    for (int64_t position = 0; position < 4; ++position) {
      for (int64_t op = 0; op < 4; ++op) {
        if (strengths[op] == 0.0) continue;
        const auto chosen = order.select(1, position).eq(op).nonzero().flatten();
        if (chosen.numel() == 0) continue;
        const auto index = chosen.to(images.device());
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
};

/// torchvision's RandomGrayscale: each image becomes its luma (in all channels) with probability p.
struct RandomGrayscale {
  double p = 0.1;

  explicit RandomGrayscale(double p = 0.1) : p(p) {
    detail::check_probability("simsiam::augment::RandomGrayscale", p);
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::RandomGrayscale", images);
    const auto chosen = detail::coin(images.size(0), p, generator).to(images.device());
    const auto gray = functional::rgb_to_grayscale(images, images.size(1));
    return torch::where(chosen.view({-1, 1, 1, 1}), gray, images);
  }
};

/// Gaussian blur with sigma ~ U[sigma_min, sigma_max] per image (SimSiam/MoCo v2: [0.1, 2.0]).
/// The kernel size is `kernel_size`, or when 0 the odd number nearest 10% of the image side (23
/// at 224), the rule of SimCLR/BYOL's tensor implementations. The official code blurs with PIL's
/// ImageFilter.GaussianBlur(radius=sigma), an approximation of the same Gaussian.
struct GaussianBlur {
  std::pair<double, double> sigma{0.1, 2.0};
  int64_t kernel_size = 0;

  explicit GaussianBlur(std::pair<double, double> sigma = {0.1, 2.0}, int64_t kernel_size = 0)
      : sigma(sigma), kernel_size(kernel_size) {
    detail::check_range("simsiam::augment::GaussianBlur", "sigma", sigma, 1e-12);
    TORCH_CHECK(kernel_size == 0 || (kernel_size > 0 && kernel_size % 2 == 1),
                "simsiam::augment::GaussianBlur: expected an odd kernel size (or 0 for 10% of the "
                "image), got ",
                kernel_size);
  }

  /// The kernel size used for images of side `side`.
  int64_t kernel_for(int64_t side) const {
    if (kernel_size > 0) return kernel_size;
    return 2 * static_cast<int64_t>(std::lround(0.1 * static_cast<double>(side) / 2.0 - 0.5)) + 1;
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    functional::detail::check_images("simsiam::augment::GaussianBlur", images);
    const auto sigmas = detail::uniform(images.size(0), sigma.first, sigma.second, generator);
    return functional::gaussian_blur(images, kernel_for(std::min(images.size(2), images.size(3))),
                                     sigmas);
  }
};

/// torchvision's RandomHorizontalFlip: each image mirrored with probability p.
struct RandomHorizontalFlip {
  double p = 0.5;

  explicit RandomHorizontalFlip(double p = 0.5) : p(p) {
    detail::check_probability("simsiam::augment::RandomHorizontalFlip", p);
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    return functional::horizontal_flip(images, detail::coin(images.size(0), p, generator));
  }
};

/// torchvision's Normalize: (x - mean) / std per channel. Draws nothing.
struct Normalize {
  std::vector<double> mean, std;

  Normalize(std::vector<double> mean, std::vector<double> std)
      : mean(std::move(mean)), std(std::move(std)) {}

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& /*generator*/) const {
    return functional::normalize(images, mean, std);
  }
};

/// torchvision's RandomApply: applies `transform` to each image with probability p (the chosen
/// images go through it together, each with its own parameters).
template <class Transform>
struct RandomApply {
  Transform transform;
  double p = 0.5;

  RandomApply(Transform transform, double p) : transform(std::move(transform)), p(p) {
    detail::check_probability("simsiam::augment::RandomApply", p);
  }

  torch::Tensor operator()(const torch::Tensor& images, torch::Generator& generator) const {
    const auto chosen = detail::coin(images.size(0), p, generator).nonzero().flatten();
    if (chosen.numel() == 0) return images;
    const auto index = chosen.to(images.device());
    return images.index_copy(0, index, transform(images.index_select(0, index), generator));
  }
};

/// Applies its functors in order (torchvision's Compose), resolved at compile time.
template <class... Transforms>
struct Compose {
  std::tuple<Transforms...> transforms;

  explicit Compose(Transforms... transforms) : transforms(std::move(transforms)...) {}

  torch::Tensor operator()(torch::Tensor images, torch::Generator& generator) const {
    std::apply([&](const auto&... t) { ((images = t(images, generator)), ...); }, transforms);
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
        transforms);
  }
};

/// Two independently augmented views of the same batch, the input of SimSiam. Owns a CPU
/// generator (seeded) for calls that do not pass one.
template <class Pipeline>
class TwoViews {
 public:
  explicit TwoViews(Pipeline pipeline, uint64_t seed = 0)
      : pipeline_(std::move(pipeline)), generator_(at::detail::createCPUGenerator(seed)) {}

  /// (view 1, view 2) of `images`, parameters drawn from `generator`.
  template <class Images>
  std::pair<torch::Tensor, torch::Tensor> operator()(const Images& images,
                                                     torch::Generator& generator) const {
    auto first = pipeline_(images, generator);
    auto second = pipeline_(images, generator);
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

 private:
  Pipeline pipeline_;
  torch::Generator generator_;
};

}  // namespace simsiam::augment
