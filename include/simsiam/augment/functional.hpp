// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Batched image operations with one parameter per image, as torchvision computes them.
///
/// Every function takes float images [B, C, H, W] in [0, 1] (C = 1 or 3) on any device, and
/// per-image parameters as tensors [B] (or values broadcast to the batch), and reproduces the
/// formulas of torchvision's tensor implementation (`torchvision/transforms/functional_tensor.py`,
/// v0.14) for each image: the tests compare against torchvision on fixtures. What torchvision does
/// one image at a time in Python, these do for the whole batch in a few tensor operations.
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "simsiam/augment/detail/simd.hpp"
#include "simsiam/detail/check.hpp"

namespace simsiam::augment::functional {

namespace detail {

namespace simd = simsiam::augment::detail::simd;

/// Fails unless `images` is a float [B, C, H, W] batch with C = 1 or 3.
inline void check_images(const char* where, const torch::Tensor& images) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
              where, ": expected images [B, C, H, W] with C = 1 or 3, got ",
              simsiam::detail::shape_string(images));
  TORCH_CHECK(images.is_floating_point(), where, ": expected floating-point images in [0, 1], got ",
              images.scalar_type());
}

/// `values` in `dtype` on `device`, without making the host wait for the device: from the CPU
/// to a GPU through pinned memory and a non-blocking copy (LibTorch's caching host allocator
/// keeps the pinned block until the copy has run); otherwise an ordinary conversion.
inline torch::Tensor to_device(const torch::Tensor& values, torch::Device device,
                               torch::ScalarType dtype) {
  if (values.device().is_cpu() && device.is_cuda()) {
    return values.to(dtype).pin_memory().to(device, /*non_blocking=*/true);
  }
  return values.to(device, dtype);
}

/// Per-image factors as [B, 1, 1, 1] in the images' dtype and device.
inline torch::Tensor per_image(const char* where, const torch::Tensor& factors,
                               const torch::Tensor& images) {
  TORCH_CHECK(factors.dim() <= 1 && (factors.numel() == 1 || factors.numel() == images.size(0)),
              where, ": expected one factor per image ([", images.size(0),
              "]) or one for all, got ", simsiam::detail::shape_string(factors));
  return to_device(factors, images.device(), images.scalar_type()).reshape({-1, 1, 1, 1});
}

/// torchvision's `_blend`: ratio * a + (1 - ratio) * b, clamped to [0, 1].
inline torch::Tensor blend(const torch::Tensor& a, const torch::Tensor& b,
                           const torch::Tensor& ratio) {
  return (ratio * a + (1.0 - ratio) * b).clamp(0.0, 1.0);
}

/// True for contiguous float32 CPU tensors, which the fused CPU loops below handle; everything
/// else (CUDA, other dtypes) takes the tensor-operation path, which computes the same formulas.
inline bool cpu_float(const torch::Tensor& images) {
  return images.device().is_cpu() && images.scalar_type() == torch::kFloat &&
         images.is_contiguous();
}

/// Per-image float32 values of `factors` (already checked by `per_image`), on the CPU.
inline std::vector<float> factor_values(const torch::Tensor& factors, int64_t batch) {
  const auto values = factors.flatten().expand({batch}).to(torch::kCPU, torch::kFloat).contiguous();
  return {values.data_ptr<float>(), values.data_ptr<float>() + batch};
}

/// Runs `fn(float* image, int64_t n)` on each image of a copy of `images` (a CPU float32
/// contiguous batch), in parallel over images, and returns the copy. One image (at most
/// 3 x 224 x 224 x 4 bytes = 600 KB in the recipes) stays in cache through all its passes.
template <class Fn>
torch::Tensor map_images_cpu(const torch::Tensor& images, Fn fn) {
  auto out = images.clone(torch::MemoryFormat::Contiguous);
  float* data = out.data_ptr<float>();
  const int64_t image_size = images.numel() / std::max<int64_t>(images.size(0), 1);
  at::parallel_for(0, images.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) fn(data + n * image_size, n);
  });
  return out;
}

/// `map_images_cpu` for the per-image colour operations: calls
/// `fn(float* image, int64_t channels, int64_t plane, float factor)` with each image's factor
/// (`factors` as `per_image` returns them).
template <class Fn>
torch::Tensor map_images_by_factor(const torch::Tensor& images, const torch::Tensor& factors,
                                   Fn fn) {
  const auto f = factor_values(factors, images.size(0));
  const int64_t channels = images.size(1), plane = images.size(2) * images.size(3);
  return map_images_cpu(images, [&](float* x, int64_t n) { fn(x, channels, plane, f[n]); });
}

/// torchvision's luma of one pixel, in its order of operations.
inline float luma(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

/// torchvision's `_blend` of one value: ratio * a + (1 - ratio) * b clamped to [0, 1].
inline float blend_value(float ratio, float a, float b) {
  return std::min(std::max(ratio * a + (1.0f - ratio) * b, 0.0f), 1.0f);
}

/// The per-image colour operations on one CPU float32 image [C, H, W] in place (plane = H * W),
/// shared by the `adjust_*` functions and `ColorJitter`'s CPU path.
inline void brightness_image(float* x, int64_t channels, int64_t plane, float factor) {
  for (int64_t i = 0; i < channels * plane; ++i) x[i] = blend_value(factor, x[i], 0.0f);
}

/// Sum of the luma of an image's pixels (of the values themselves when 1-channel): float lanes
/// over blocks of 256 pixels, blocks added in double.
inline double luma_sum(const float* x, int64_t channels, int64_t plane) {
  const auto value = [&](int64_t i) {
    return channels == 3 ? luma(x[i], x[plane + i], x[2 * plane + i]) : x[i];
  };
  double sum = 0.0;
  for (int64_t block = 0; block < plane; block += 256) {
    const int64_t end = std::min(plane, block + 256);
    int64_t i = block;
    float partial = 0.0f;
#if SIMSIAM_HAVE_VECTOR_EXTENSIONS
    simd::Floats lanes{};
    for (; i + simd::kLanes <= end; i += simd::kLanes) {
      if (channels == 3) {
        lanes += 0.2989f * simd::load(x + i) + 0.587f * simd::load(x + plane + i) +
                 0.114f * simd::load(x + 2 * plane + i);
      } else {
        lanes += simd::load(x + i);
      }
    }
    partial = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < end; ++i) partial += value(i);
    sum += partial;
  }
  return sum;
}

inline void contrast_image(float* x, int64_t channels, int64_t plane, float factor) {
  const auto mean = static_cast<float>(luma_sum(x, channels, plane) / static_cast<double>(plane));
  for (int64_t i = 0; i < channels * plane; ++i) x[i] = blend_value(factor, x[i], mean);
}

/// Three-channel images only (torchvision leaves one-channel images unchanged).
inline void saturation_image(float* x, int64_t plane, float factor) {
  float* __restrict r = x;
  float* __restrict g = x + plane;
  float* __restrict b = x + 2 * plane;
  for (int64_t i = 0; i < plane; ++i) {
    const float gray = luma(r[i], g[i], b[i]);
    r[i] = blend_value(factor, r[i], gray);
    g[i] = blend_value(factor, g[i], gray);
    b[i] = blend_value(factor, b[i], gray);
  }
}

/// torchvision's rgb->hsv, hue shift, hsv->rgb for one pixel (F = float, I = int32_t) or four
/// (simd::Floats, simd::Ints), in float32 (see `rgb_to_hsv`). Selects instead of branches and
/// no libm calls; each step equals torchvision's for the values it can take (noted inline), up
/// to the rounding of two divisions done as multiplications by a reciprocal.
template <class F, class I>
inline void shift_hue(F& r, F& g, F& b, float shift) {
  const F one = F{} + 1.0f, zero = F{};
  const F maxc = simd::max(r, simd::max(g, b)), minc = simd::min(r, simd::min(g, b));
  const auto eqc = maxc == minc;
  const F cr = maxc - minc;
  const F s = cr / (eqc ? one : maxc);
  const F crd = eqc ? one : cr;
  const F inverse = 1.0f / crd;  // one division instead of three (within an ulp of them)
  const F rc = (maxc - r) * inverse, gc = (maxc - g) * inverse, bc = (maxc - b) * inverse;
  const auto is_r = maxc == r, is_g = maxc == g;
  const F hr = is_r ? bc - gc : zero;
  const F hg = is_g && !is_r ? 2.0f + rc - bc : zero;
  const F hb = !is_g && !is_r ? 4.0f + gc - rc : zero;
  F h = (hr + hg + hb) * (1.0f / 6.0f) + 1.0f;  // in [5/6, 11/6]: fmod(h, 1) is h or h - 1
  h = h >= 1.0f ? h - 1.0f : h;
  h = h + shift;  // in (-0.5, 1.5): torch.remainder(h, 1) adds or subtracts at most 1
  h = h < 0.0f ? h + 1.0f : (h >= 1.0f ? h - 1.0f : h);
  const F v = maxc;
  const F h6 = h * 6.0f;
  const I raw = simd::to_int(h6);  // floor, as h6 >= 0
  const F f = h6 - simd::to_float(raw);
  const I i = raw == 6 ? I{} : raw;  // i % 6
  const F p = simd::min(simd::max(v * (1.0f - s), zero), one);
  const F q = simd::min(simd::max(v * (1.0f - s * f), zero), one);
  const F t = simd::min(simd::max(v * (1.0f - s * (1.0f - f)), zero), one);
  // Sector i: r from (v, q, p, p, t, v), g from (t, v, v, q, p, p), b from (p, p, t, v, v, q).
  r = (i == 0) || (i == 5) ? v : (i == 1 ? q : (i == 4 ? t : p));
  g = (i == 1) || (i == 2) ? v : (i == 0 ? t : (i == 3 ? q : p));
  b = (i == 3) || (i == 4) ? v : (i == 2 ? t : (i == 5 ? q : p));
}

/// `shift_hue` over the planes of one image, four pixels at a time where the compiler allows.
inline void shift_hue_planes(float* red, float* green, float* blue, int64_t count, float shift) {
  int64_t j = 0;
#if SIMSIAM_HAVE_VECTOR_EXTENSIONS
  for (; j + simd::kLanes <= count; j += simd::kLanes) {
    auto r = simd::load(red + j), g = simd::load(green + j), b = simd::load(blue + j);
    shift_hue<simd::Floats, simd::Ints>(r, g, b, shift);
    simd::store(red + j, r);
    simd::store(green + j, g);
    simd::store(blue + j, b);
  }
#endif
  for (; j < count; ++j) shift_hue<float, int32_t>(red[j], green[j], blue[j], shift);
}

/// Three-channel images only: every channel becomes the luma.
inline void grayscale_image(float* x, int64_t plane) {
  float* __restrict r = x;
  float* __restrict g = x + plane;
  float* __restrict b = x + 2 * plane;
  for (int64_t i = 0; i < plane; ++i) {
    const float gray = luma(r[i], g[i], b[i]);
    r[i] = gray;
    g[i] = gray;
    b[i] = gray;
  }
}

/// Mirrors each row of an image of `rows` rows of `width` values.
inline void flip_image(float* x, int64_t rows, int64_t width) {
  for (int64_t y = 0; y < rows; ++y) std::reverse(x + y * width, x + (y + 1) * width);
}

/// Three-channel images only.
inline void hue_image(float* x, int64_t plane, float shift) {
  shift_hue_planes(x, x + plane, x + 2 * plane, plane, shift);
}

}  // namespace detail

/// Luma 0.2989 R + 0.587 G + 0.114 B (torchvision `rgb_to_grayscale`), [B, 1, H, W], repeated
/// to `output_channels` (1 or 3). One-channel images are returned as they are (or repeated).
inline torch::Tensor rgb_to_grayscale(const torch::Tensor& images, int64_t output_channels = 1) {
  detail::check_images("simsiam::augment::rgb_to_grayscale", images);
  TORCH_CHECK(output_channels == 1 || output_channels == 3,
              "simsiam::augment::rgb_to_grayscale: expected output_channels 1 or 3, got ",
              output_channels);
  torch::Tensor gray = images;
  if (images.size(1) == 3 && detail::cpu_float(images)) {
    const int64_t plane = images.size(2) * images.size(3);
    auto out = detail::map_images_cpu(
        images, [&](float* x, int64_t /*n*/) { detail::grayscale_image(x, plane); });
    return output_channels == 3 ? out : out.narrow(1, 0, 1).contiguous();
  }
  if (images.size(1) == 3) {
    const auto channels = images.unbind(1);
    gray = (0.2989 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]).unsqueeze(1);
  }
  return output_channels == 1 ? gray : gray.expand({-1, 3, -1, -1}).contiguous();
}

/// Multiplies each image by its factor (torchvision `adjust_brightness`), clamped to [0, 1].
inline torch::Tensor adjust_brightness(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_brightness";
  detail::check_images(kWhere, images);
  const auto ratio = detail::per_image(kWhere, factors, images);
  if (detail::cpu_float(images)) {
    return detail::map_images_by_factor(images, ratio, detail::brightness_image);
  }
  return detail::blend(images, torch::zeros_like(images), ratio);
}

/// Blends each image with the mean of its grayscale version (torchvision `adjust_contrast`).
inline torch::Tensor adjust_contrast(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_contrast";
  detail::check_images(kWhere, images);
  const auto ratio = detail::per_image(kWhere, factors, images);
  if (detail::cpu_float(images)) {
    return detail::map_images_by_factor(images, ratio, detail::contrast_image);
  }
  const auto mean = rgb_to_grayscale(images).mean({1, 2, 3}, /*keepdim=*/true);
  return detail::blend(images, mean, ratio);
}

/// Blends each image with its grayscale version (torchvision `adjust_saturation`); one-channel
/// images are returned unchanged, as torchvision does.
inline torch::Tensor adjust_saturation(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_saturation";
  detail::check_images(kWhere, images);
  const auto ratio = detail::per_image(kWhere, factors, images);
  if (images.size(1) == 1) return images;
  if (detail::cpu_float(images)) {
    return detail::map_images_by_factor(
        images, ratio,
        [](float* x, int64_t, int64_t plane, float k) { detail::saturation_image(x, plane, k); });
  }
  return detail::blend(images, rgb_to_grayscale(images), ratio);
}

/// RGB to HSV, [B, 3, H, W] -> (h, s, v) stacked on dim 1, as torchvision's `_rgb2hsv`.
inline torch::Tensor rgb_to_hsv(const torch::Tensor& images) {
  const auto rgb = images.unbind(1);
  const auto maxc = std::get<0>(images.max(1));
  const auto minc = std::get<0>(images.min(1));
  const auto eqc = maxc == minc;
  const auto cr = maxc - minc;
  const auto ones = torch::ones_like(maxc);
  const auto s = cr / torch::where(eqc, ones, maxc);
  const auto cr_divisor = torch::where(eqc, ones, cr);
  const auto rc = (maxc - rgb[0]) / cr_divisor;
  const auto gc = (maxc - rgb[1]) / cr_divisor;
  const auto bc = (maxc - rgb[2]) / cr_divisor;
  const auto hr = (maxc == rgb[0]) * (bc - gc);
  const auto hg = ((maxc == rgb[1]) & (maxc != rgb[0])) * (2.0 + rc - bc);
  const auto hb = ((maxc != rgb[1]) & (maxc != rgb[0])) * (4.0 + gc - rc);
  const auto h = torch::fmod((hr + hg + hb) / 6.0 + 1.0, 1.0);
  return torch::stack({h, s, maxc}, 1);
}

/// HSV to RGB, the inverse of `rgb_to_hsv`, as torchvision's `_hsv2rgb`.
inline torch::Tensor hsv_to_rgb(const torch::Tensor& hsv) {
  const auto parts = hsv.unbind(1);
  const auto &h = parts[0], &s = parts[1], &v = parts[2];
  auto i = torch::floor(h * 6.0);
  const auto f = h * 6.0 - i;
  i = i.to(torch::kInt) % 6;
  const auto p = torch::clamp(v * (1.0 - s), 0.0, 1.0);
  const auto q = torch::clamp(v * (1.0 - s * f), 0.0, 1.0);
  const auto t = torch::clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
  // Sector i picks (r, g, b) from (v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q).
  const auto sector = i.unsqueeze(1).to(torch::kLong);  // [B, 1, H, W]
  const auto pick = [&](std::vector<torch::Tensor> table) {
    return torch::stack(table, 1).gather(1, sector);
  };
  return torch::cat({pick({v, q, p, p, t, v}), pick({t, v, v, q, p, p}), pick({p, p, t, v, v, q})},
                    1);
}

/// Rotates each image's hue by its factor in [-0.5, 0.5] (torchvision `adjust_hue`); one-channel
/// images are returned unchanged.
inline torch::Tensor adjust_hue(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_hue";
  detail::check_images(kWhere, images);
  const auto shift = detail::per_image(kWhere, factors, images);
  // Checked where the factors are: no device read for factors on the CPU (the transforms').
  const double largest = factors.abs().max().item<double>();
  TORCH_CHECK(largest <= 0.5, kWhere, ": expected hue factors in [-0.5, 0.5], got up to ", largest);
  if (images.size(1) == 1) return images;
  if (detail::cpu_float(images)) {  // one fused pass per pixel instead of ~40 tensor operations
    return detail::map_images_by_factor(
        images, shift,
        [](float* x, int64_t, int64_t plane, float k) { detail::hue_image(x, plane, k); });
  }
  auto hsv = rgb_to_hsv(images);
  const auto h = torch::remainder(hsv.select(1, 0) + shift.squeeze(1), 1.0);
  return hsv_to_rgb(torch::stack({h, hsv.select(1, 1), hsv.select(1, 2)}, 1));
}

/// torchvision's 1-D Gaussian kernel for each sigma: exp(-x^2 / 2 sigma^2) normalised, x on
/// linspace(-(k-1)/2, (k-1)/2, k). Returns [B, k].
inline torch::Tensor gaussian_kernels(int64_t kernel_size, const torch::Tensor& sigmas) {
  const auto half = (kernel_size - 1) * 0.5;
  const auto x = torch::linspace(-half, half, kernel_size, sigmas.options());
  const auto pdf = torch::exp(-0.5 * (x.unsqueeze(0) / sigmas.reshape({-1, 1})).pow(2));
  return pdf / pdf.sum(1, /*keepdim=*/true);
}

namespace detail {

/// Mirror index of `i` in [0, n) without repeating the edge (`reflect` padding), for |i| < n.
inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

/// How far from the centre the taps of a symmetric kernel `k` (radius r) matter in float32: the
/// outer taps whose weights add up (both sides) to less than 2^-25 are left out. They move no
/// output in [0, 1] by more than a quarter of float32's spacing at 1 (the rounding of the sum
/// itself is larger), and a small sigma's 23-tap kernel shrinks to a few taps.
inline int64_t kernel_reach(const float* k, int64_t radius) {
  double tail = 0.0;
  int64_t reach = radius;
  while (reach > 0 && tail + 2.0 * k[radius + reach] < 0x1p-25) tail += 2.0 * k[radius + reach--];
  return reach;
}

/// Separable blur of each plane of a CPU float32 contiguous batch with its image's kernel
/// ([B, k] float32, symmetric as Gaussian kernels are), reflect padding: a horizontal pass over
/// a padded copy of each row, then a vertical pass over rows of the intermediate plane (taps
/// beyond `kernel_reach` skipped). The inner loops run along a row (the
/// compiler vectorises them); a plane stays in cache.
inline torch::Tensor gaussian_blur_cpu(const torch::Tensor& images, const torch::Tensor& kernels) {
  const int64_t channels = images.size(1), height = images.size(2), width = images.size(3);
  const int64_t ksize = kernels.size(1), radius = ksize / 2, plane = height * width;
  auto out = torch::empty_like(images, torch::MemoryFormat::Contiguous);
  const float* src_all = images.data_ptr<float>();
  float* dst_all = out.data_ptr<float>();
  const float* k_all = kernels.data_ptr<float>();
  at::parallel_for(0, images.size(0) * channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(width + 2 * radius));
    std::vector<float> tmp(static_cast<size_t>(plane));
    for (int64_t index = begin; index < end; ++index) {
      const float* src = src_all + index * plane;
      float* dst = dst_all + index * plane;
      const float* k = k_all + (index / channels) * ksize;
      const int64_t reach = kernel_reach(k, radius);
      for (int64_t y = 0; y < height; ++y) {
        const float* in = src + y * width;
        for (int64_t p = 0; p < width + 2 * radius; ++p) row[p] = in[reflect(p - radius, width)];
        float* o = tmp.data() + y * width;
        const float* padded = row.data();
        const float* centre = padded + radius;
        for (int64_t x = 0; x < width; ++x) o[x] = k[radius] * centre[x];
        for (int64_t d = 1; d <= reach; ++d) {  // the kernel is symmetric: k[r - d] = k[r + d]
          const float kd = k[radius + d];
          const float *left = centre - d, *right = centre + d;
          for (int64_t x = 0; x < width; ++x) o[x] += kd * (left[x] + right[x]);
        }
      }
      for (int64_t y = 0; y < height; ++y) {
        float* o = dst + y * width;
        const float* centre = tmp.data() + y * width;
        for (int64_t x = 0; x < width; ++x) o[x] = k[radius] * centre[x];
        for (int64_t d = 1; d <= reach; ++d) {
          const float kd = k[radius + d];
          const float* up = tmp.data() + reflect(y - d, height) * width;
          const float* down = tmp.data() + reflect(y + d, height) * width;
          for (int64_t x = 0; x < width; ++x) o[x] += kd * (up[x] + down[x]);
        }
      }
    }
  });
  return out;
}

}  // namespace detail

/// Gaussian blur of each image with its own sigma (torchvision `gaussian_blur`, square odd
/// kernel, reflect padding). Applied as two 1-D passes: the same kernel as torchvision's 2-D outer
/// product, k times fewer operations (equal within float rounding).
inline torch::Tensor gaussian_blur(const torch::Tensor& images, int64_t kernel_size,
                                   const torch::Tensor& sigmas) {
  constexpr const char* kWhere = "simsiam::augment::gaussian_blur";
  detail::check_images(kWhere, images);
  TORCH_CHECK(kernel_size > 0 && kernel_size % 2 == 1, kWhere,
              ": expected an odd positive kernel size, got ", kernel_size);
  const int64_t pad = kernel_size / 2;
  TORCH_CHECK(pad < images.size(2) && pad < images.size(3), kWhere, ": kernel size ", kernel_size,
              " needs images larger than ", pad, " pixels for reflect padding, got ",
              images.sizes());
  const auto sigma = detail::per_image(kWhere, sigmas, images).flatten().expand({images.size(0)});
  TORCH_CHECK((sigmas > 0).all().item<bool>(), kWhere, ": expected sigmas > 0");  // where given
  const int64_t b = images.size(0), c = images.size(1);
  if (detail::cpu_float(images)) {
    const auto kernels = gaussian_kernels(kernel_size, sigma).contiguous();  // [B, k]
    return detail::gaussian_blur_cpu(images, kernels);
  }
  const auto kernel = gaussian_kernels(kernel_size, sigma).repeat_interleave(c, 0);  // [B*C, k]
  namespace F = torch::nn::functional;
  auto x = F::pad(images.reshape({1, b * c, images.size(2), images.size(3)}),
                  F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReflect));
  x = F::conv2d(x, kernel.view({b * c, 1, 1, kernel_size}), F::Conv2dFuncOptions().groups(b * c));
  x = F::conv2d(x, kernel.view({b * c, 1, kernel_size, 1}), F::Conv2dFuncOptions().groups(b * c));
  return x.view_as(images);
}

/// Mirrors the images where `flip` [B] (bool) is true (torchvision `hflip`).
inline torch::Tensor horizontal_flip(const torch::Tensor& images, const torch::Tensor& flip) {
  TORCH_CHECK(
      images.defined() && images.dim() == 4 && flip.dim() == 1 && flip.size(0) == images.size(0),
      "simsiam::augment::horizontal_flip: expected images [B, C, H, W] and flip [B], got ",
      simsiam::detail::shape_string(images), " and ", simsiam::detail::shape_string(flip));
  if (detail::cpu_float(images)) {
    const auto flags = flip.to(torch::kCPU, torch::kBool).contiguous();
    const bool* flagged = flags.data_ptr<bool>();
    const int64_t rows = images.size(1) * images.size(2), width = images.size(3);
    return detail::map_images_cpu(images, [&](float* x, int64_t n) {
      if (flagged[n]) detail::flip_image(x, rows, width);
    });
  }
  return torch::where(detail::to_device(flip, images.device(), torch::kBool).view({-1, 1, 1, 1}),
                      images.flip(3), images);
}

/// (x - mean) / std per channel (torchvision `normalize`).
inline torch::Tensor normalize(const torch::Tensor& images, const std::vector<double>& mean,
                               const std::vector<double>& std) {
  constexpr const char* kWhere = "simsiam::augment::normalize";
  detail::check_images(kWhere, images);
  const auto channels = static_cast<size_t>(images.size(1));
  TORCH_CHECK(mean.size() == channels && std.size() == channels, kWhere, ": expected ", channels,
              " means and stds for ", channels, "-channel images, got ", mean.size(), " and ",
              std.size());
  for (double s : std) TORCH_CHECK(s > 0, kWhere, ": expected positive stds, got ", s);
  if (detail::cpu_float(images)) {  // one pass; (x - mean) / std in float32 as the tensor path
    const int64_t plane = images.size(2) * images.size(3);
    auto out = torch::empty_like(images);
    const float* src = images.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    at::parallel_for(0, images.size(0) * images.size(1), 1, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const auto channel = static_cast<size_t>(index % images.size(1));
        const auto m = static_cast<float>(mean[channel]), s = static_cast<float>(std[channel]);
        const float* x = src + index * plane;
        float* y = dst + index * plane;
        for (int64_t i = 0; i < plane; ++i) y[i] = (x[i] - m) / s;
      }
    });
    return out;
  }
  const auto on_device = [&](const std::vector<double>& values) {
    return detail::to_device(torch::tensor(values, torch::kDouble), images.device(),
                             images.scalar_type())
        .view({1, -1, 1, 1});
  };
  return (images - on_device(mean)) / on_device(std);
}

namespace detail {

/// One axis of `resized_crop` for one image, as ATen's upsample_bilinear2d computes it in
/// float32: src = (extent / size) * (dst + 0.5) - 0.5 clamped at 0; neighbours i0 = floor(src)
/// and i0 + 1 (except at the last row/column), offset by `start`; weights 1 - l1 and l1 with
/// l1 = src - i0. The tensor path below computes the same, operation by operation.
inline void crop_axis(int64_t start, int64_t extent, int64_t size, int64_t* i0, int64_t* i1,
                      float* w0, float* w1) {
  const float scale = static_cast<float>(extent) / static_cast<float>(size);
  for (int64_t o = 0; o < size; ++o) {
    const float product = scale * (static_cast<float>(o) + 0.5f);
    const float src = std::max(product - 0.5f, 0.0f);
    const int64_t lo = std::min(static_cast<int64_t>(std::floor(src)), extent - 1);
    const float l1 = std::min(std::max(src - static_cast<float>(lo), 0.0f), 1.0f);
    i0[o] = lo + start;
    i1[o] = lo + (lo < extent - 1 ? 1 : 0) + start;
    w0[o] = 1.0f - l1;
    w1[o] = l1;
  }
}

/// `resized_crop` on the CPU for contiguous uint8 or float32 input and float32 output, or uint8
/// input and output (`Out` uint8: the blend of the raw values rounded half up, as PIL's
/// fixed-point resampling rounds): each output row blends two source rows resampled horizontally,
/// and consecutive output rows mostly reuse them. Same arithmetic, in the same order, as the tensor
/// path (within a rounding where the compiler fuses multiply-adds, e.g. -march with FMA: a uint8
/// value then differs by one level at most).
template <class T, class Out = float>
torch::Tensor resized_crop_cpu(const torch::Tensor& images, const torch::Tensor& boxes,
                               int64_t size) {
  constexpr bool kBytesOut = std::is_same_v<Out, uint8_t>;
  static_assert(!kBytesOut || std::is_same_v<T, uint8_t>, "uint8 crops come from uint8 images");
  const int64_t b = images.size(0), c = images.size(1), height = images.size(2),
                width = images.size(3);
  auto out = torch::empty({b, c, size, size}, kBytesOut ? torch::kByte : torch::kFloat);
  std::vector<int64_t> y0(b * size), y1(b * size), x0(b * size), x1(b * size);
  std::vector<float> ly0(b * size), ly1(b * size), lx0(b * size), lx1(b * size);
  const auto box = boxes.accessor<int64_t, 2>();
  for (int64_t n = 0; n < b; ++n) {
    const int64_t at = n * size;
    crop_axis(box[n][0], box[n][2], size, &y0[at], &y1[at], &ly0[at], &ly1[at]);
    crop_axis(box[n][1], box[n][3], size, &x0[at], &x1[at], &lx0[at], &lx1[at]);
  }
  const T* in = images.data_ptr<T>();
  Out* dst = out.data_ptr<Out>();
  const int64_t *y0p = y0.data(), *y1p = y1.data(), *x0p = x0.data(), *x1p = x1.data();
  const float *fy0p = ly0.data(), *fy1p = ly1.data(), *fx0p = lx0.data(), *fx1p = lx1.data();
  const float scale = std::is_same_v<T, uint8_t> && !kBytesOut ? 1.0f / 255.0f : 1.0f;
  at::parallel_for(0, b * c, 1, [&](int64_t begin, int64_t end) {
    // Two source rows resampled horizontally; consecutive output rows mostly share them.
    std::vector<float> buffer(static_cast<size_t>(2 * size));
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / c;
      const T* src = in + plane * height * width;
      Out* o = dst + plane * size * size;
      const int64_t *ya = y0p + n * size, *yb = y1p + n * size, *xa = x0p + n * size,
                    *xb = x1p + n * size;
      const float *fy0 = fy0p + n * size, *fy1 = fy1p + n * size, *fx0 = fx0p + n * size,
                  *fx1 = fx1p + n * size;
      const auto resample = [&](int64_t y, float* row) {
        const T* r = src + y * width;
        for (int64_t ox = 0; ox < size; ++ox) {
          const float p0 = static_cast<float>(r[xa[ox]]) * scale;
          const float p1 = static_cast<float>(r[xb[ox]]) * scale;
          row[ox] = fx0[ox] * p0 + fx1[ox] * p1;
        }
      };
      float *top = buffer.data(), *bottom = buffer.data() + size;
      int64_t top_y = -1, bottom_y = -1;  // the source rows held in top and bottom
      for (int64_t oy = 0; oy < size; ++oy) {
        if (top_y != ya[oy]) {
          if (bottom_y == ya[oy]) {
            std::swap(top, bottom);
            std::swap(top_y, bottom_y);
          } else {
            resample(ya[oy], top);
            top_y = ya[oy];
          }
        }
        if (bottom_y != yb[oy] && yb[oy] != ya[oy]) {
          resample(yb[oy], bottom);
          bottom_y = yb[oy];
        }
        const float* lower = yb[oy] == ya[oy] ? top : bottom;
        Out* out_row = o + oy * size;
        const float w0 = fy0[oy], w1 = fy1[oy];
        for (int64_t ox = 0; ox < size; ++ox) {
          const float value = w0 * top[ox] + w1 * lower[ox];
          if constexpr (kBytesOut) {
            // value in [0, 255]: + 0.5 then truncation rounds half up (vectorised; nearbyint is
            // a libm call per pixel, slower than the whole decode).
            out_row[ox] = static_cast<uint8_t>(std::min(value + 0.5f, 255.0f));
          } else {
            out_row[ox] = value;
          }
        }
      }
    }
  });
  return out;
}

}  // namespace detail

/// Crop boxes (top, left, height, width) in pixels, one row per image: int64 [B, 4].
/// Crops each image to its box and resizes it to size x size with bilinear interpolation,
/// `align_corners=false` and no antialiasing: torchvision `resized_crop` on tensors. Accepts
/// uint8 or float images; returns float images in [0, 1] (uint8 values are divided by 255), or
/// with `dtype` uint8 (uint8 images only) the blend of the raw 0-255 values rounded half up, as
/// PIL's resize keeps its images in uint8.
inline torch::Tensor resized_crop(const torch::Tensor& images, const torch::Tensor& boxes,
                                  int64_t size, torch::ScalarType dtype = torch::kFloat) {
  constexpr const char* kWhere = "simsiam::augment::resized_crop";
  TORCH_CHECK(images.defined() && images.dim() == 4, kWhere, ": expected images [B, C, H, W], got ",
              simsiam::detail::shape_string(images));
  TORCH_CHECK(size > 0, kWhere, ": expected size > 0, got ", size);
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(0) == images.size(0) && boxes.size(1) == 4, kWhere,
              ": expected boxes [", images.size(0), ", 4] (top, left, height, width), got ",
              simsiam::detail::shape_string(boxes));
  const bool bytes_out = dtype == torch::kByte;
  TORCH_CHECK(!bytes_out || images.scalar_type() == torch::kByte, kWhere,
              ": expected uint8 images for uint8 crops, got ", images.scalar_type());
  const int64_t height = images.size(2), width = images.size(3);
  const bool fused =
      images.device().is_cpu() && images.is_contiguous() && (dtype == torch::kFloat || bytes_out) &&
      (images.scalar_type() == torch::kByte || images.scalar_type() == torch::kFloat);
  if (fused) {  // checks and coordinates in plain loops: no tensor operations per image
    const auto cpu_boxes = boxes.to(torch::kCPU, torch::kLong).contiguous();
    const auto box = cpu_boxes.accessor<int64_t, 2>();
    for (int64_t n = 0; n < cpu_boxes.size(0); ++n) {
      TORCH_CHECK(box[n][2] > 0 && box[n][3] > 0 && box[n][0] >= 0 && box[n][1] >= 0 &&
                      box[n][0] + box[n][2] <= height && box[n][1] + box[n][3] <= width,
                  kWhere, ": expected boxes inside the ", height, "x", width, " images, got (",
                  box[n][0], ", ", box[n][1], ", ", box[n][2], ", ", box[n][3], ") for image ", n);
    }
    if (bytes_out) return detail::resized_crop_cpu<uint8_t, uint8_t>(images, cpu_boxes, size);
    return images.scalar_type() == torch::kByte
               ? detail::resized_crop_cpu<uint8_t>(images, cpu_boxes, size)
               : detail::resized_crop_cpu<float>(images, cpu_boxes, size);
  }
  {  // checked where the boxes are: no device read for boxes on the CPU (the transforms')
    const auto given = boxes.to(torch::kLong);
    const auto top = given.select(1, 0), left = given.select(1, 1), h = given.select(1, 2),
               w = given.select(1, 3);
    TORCH_CHECK(
        ((h > 0) & (w > 0) & (top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width))
            .all()
            .item<bool>(),
        kWhere, ": expected boxes inside the ", height, "x", width, " images");
  }
  const auto box = detail::to_device(boxes, images.device(), torch::kLong);
  const auto top = box.select(1, 0), left = box.select(1, 1), h = box.select(1, 2),
             w = box.select(1, 3);
  // Source coordinates as ATen's upsample_bilinear2d computes them, in float32:
  // src = (in / out) * (dst + 0.5) - 0.5, clamped at 0; neighbours i0 = floor(src), i1 = i0 + 1
  // except at the last row/column; weights l1 = src - i0, l0 = 1 - l1.
  const auto axis = [&](const torch::Tensor& start, const torch::Tensor& extent) {
    const auto fopts = torch::TensorOptions().dtype(torch::kFloat).device(images.device());
    const auto scale = extent.to(torch::kFloat) / static_cast<float>(size);
    const auto dst = torch::arange(size, fopts) + 0.5f;
    const auto src = (scale.unsqueeze(1) * dst.unsqueeze(0) - 0.5f).clamp_min(0.0f);  // [B, S]
    auto i0 = src.floor().to(torch::kLong).minimum(extent.unsqueeze(1) - 1);
    const auto l1 = (src - i0.to(torch::kFloat)).clamp(0.0f, 1.0f);
    const auto i1 = i0 + (i0 < extent.unsqueeze(1) - 1).to(torch::kLong);
    return std::make_tuple(i0 + start.unsqueeze(1), i1 + start.unsqueeze(1), 1.0f - l1, l1);
  };
  const auto [y0, y1, ly0, ly1] = axis(top, h);
  const auto [x0, x1, lx0, lx1] = axis(left, w);
  const int64_t b = images.size(0), c = images.size(1);
  const auto compute = bytes_out ? torch::kFloat : dtype;  // uint8 crops: raw values, rounded
  const auto as_float = [&](const torch::Tensor& t) {
    return images.is_floating_point() || bytes_out ? t.to(compute) : t.to(compute).div_(255.0);
  };
  const auto out_type = torch::TensorOptions().dtype(compute).device(images.device());
  const auto rows = [&](const torch::Tensor& index) {  // [B, C, S, W]
    return images.gather(2, index.view({b, 1, size, 1}).expand({b, c, size, width}));
  };
  const auto cols = [&](const torch::Tensor& picked, const torch::Tensor& index) {  // [B, C, S, S]
    return as_float(picked.gather(3, index.view({b, 1, 1, size}).expand({b, c, size, size})));
  };
  const auto r0 = rows(y0), r1 = rows(y1);
  const auto wx0 = lx0.to(out_type).view({b, 1, 1, size}),
             wx1 = lx1.to(out_type).view({b, 1, 1, size});
  const auto top_row = wx0 * cols(r0, x0) + wx1 * cols(r0, x1);
  const auto bottom_row = wx0 * cols(r1, x0) + wx1 * cols(r1, x1);
  auto out = ly0.to(out_type).view({b, 1, size, 1}) * top_row +
             ly1.to(out_type).view({b, 1, size, 1}) * bottom_row;
  return bytes_out ? out.add_(0.5f).floor_().clamp_(0.0f, 255.0f).to(torch::kByte) : out;
}

}  // namespace simsiam::augment::functional
