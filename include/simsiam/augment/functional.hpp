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

#include "simsiam/detail/check.hpp"

namespace simsiam::augment::functional {

namespace detail {

/// Fails unless `images` is a float [B, C, H, W] batch with C = 1 or 3.
inline void check_images(const char* where, const torch::Tensor& images) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
              where, ": expected images [B, C, H, W] with C = 1 or 3, got ",
              simsiam::detail::shape_string(images));
  TORCH_CHECK(images.is_floating_point(), where, ": expected floating-point images in [0, 1], got ",
              images.scalar_type());
}

/// Per-image factors as [B, 1, 1, 1] in the images' dtype and device.
inline torch::Tensor per_image(const char* where, const torch::Tensor& factors,
                               const torch::Tensor& images) {
  TORCH_CHECK(factors.dim() <= 1 && (factors.numel() == 1 || factors.numel() == images.size(0)),
              where, ": expected one factor per image ([", images.size(0),
              "]) or one for all, got ", simsiam::detail::shape_string(factors));
  return factors.to(images.options()).reshape({-1, 1, 1, 1});
}

/// torchvision's `_blend`: ratio * a + (1 - ratio) * b, clamped to [0, 1].
inline torch::Tensor blend(const torch::Tensor& a, const torch::Tensor& b,
                           const torch::Tensor& ratio) {
  return (ratio * a + (1.0 - ratio) * b).clamp(0.0, 1.0);
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
  return detail::blend(images, torch::zeros_like(images),
                       detail::per_image(kWhere, factors, images));
}

/// Blends each image with the mean of its grayscale version (torchvision `adjust_contrast`).
inline torch::Tensor adjust_contrast(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_contrast";
  detail::check_images(kWhere, images);
  const auto mean = rgb_to_grayscale(images).mean({1, 2, 3}, /*keepdim=*/true);
  return detail::blend(images, mean, detail::per_image(kWhere, factors, images));
}

/// Blends each image with its grayscale version (torchvision `adjust_saturation`); one-channel
/// images are returned unchanged, as torchvision does.
inline torch::Tensor adjust_saturation(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_saturation";
  detail::check_images(kWhere, images);
  const auto ratio = detail::per_image(kWhere, factors, images);
  if (images.size(1) == 1) return images;
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

namespace detail {

/// True for contiguous float32 CPU tensors, which the fused CPU loops below handle; everything
/// else (CUDA, other dtypes) takes the tensor-operation path, which computes the same formulas.
inline bool cpu_float(const torch::Tensor& images) {
  return images.device().is_cpu() && images.scalar_type() == torch::kFloat &&
         images.is_contiguous();
}

/// torchvision's rgb->hsv, hue shift, hsv->rgb for one pixel, in float32 (see `rgb_to_hsv`).
/// Written without branches or libm calls so that the pixel loop vectorises; each step equals
/// torchvision's for the values it can take (noted inline).
inline void shift_hue_pixel(float& r, float& g, float& b, float shift) {
  const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  const bool eqc = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (eqc ? 1.0f : maxc);
  const float crd = eqc ? 1.0f : cr;
  const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
  const float hr = maxc == r ? bc - gc : 0.0f;
  const float hg = (maxc == g && maxc != r) ? 2.0f + rc - bc : 0.0f;
  const float hb = (maxc != g && maxc != r) ? 4.0f + gc - rc : 0.0f;
  float h = (hr + hg + hb) / 6.0f + 1.0f;  // in [5/6, 11/6]: fmod(h, 1) is h or h - 1
  h = h >= 1.0f ? h - 1.0f : h;
  h = h + shift;  // in (-0.5, 1.5): torch.remainder(h, 1) adds or subtracts at most 1
  h = h < 0.0f ? h + 1.0f : (h >= 1.0f ? h - 1.0f : h);
  const float v = maxc;
  const float h6 = h * 6.0f;
  const int raw = static_cast<int>(h6);  // floor, as h6 >= 0
  const float f = h6 - static_cast<float>(raw);
  const int i = raw == 6 ? 0 : raw;  // i % 6
  const float p = std::min(std::max(v * (1.0f - s), 0.0f), 1.0f);
  const float q = std::min(std::max(v * (1.0f - s * f), 0.0f), 1.0f);
  const float t = std::min(std::max(v * (1.0f - s * (1.0f - f)), 0.0f), 1.0f);
  // Sector i: r from (v, q, p, p, t, v), g from (t, v, v, q, p, p), b from (p, p, t, v, v, q).
  r = (i == 0 || i == 5) ? v : (i == 1 ? q : (i == 4 ? t : p));
  g = (i == 1 || i == 2) ? v : (i == 0 ? t : (i == 3 ? q : p));
  b = (i == 3 || i == 4) ? v : (i == 2 ? t : (i == 5 ? q : p));
}

}  // namespace detail

/// Rotates each image's hue by its factor in [-0.5, 0.5] (torchvision `adjust_hue`); one-channel
/// images are returned unchanged.
inline torch::Tensor adjust_hue(const torch::Tensor& images, const torch::Tensor& factors) {
  constexpr const char* kWhere = "simsiam::augment::adjust_hue";
  detail::check_images(kWhere, images);
  const auto shift = detail::per_image(kWhere, factors, images);
  TORCH_CHECK(shift.abs().max().item<double>() <= 0.5, kWhere,
              ": expected hue factors in [-0.5, 0.5], got up to ",
              shift.abs().max().item<double>());
  if (images.size(1) == 1) return images;
  if (detail::cpu_float(images)) {  // one fused pass per pixel instead of ~40 tensor operations
    auto out = images.clone();
    const auto shifts = shift.flatten().expand({images.size(0)}).contiguous();
    const float* shift_data = shifts.data_ptr<float>();
    float* data = out.data_ptr<float>();
    const int64_t plane = images.size(2) * images.size(3);
    at::parallel_for(0, images.size(0), 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        float* r = data + n * 3 * plane;
        for (int64_t i = 0; i < plane; ++i) {
          detail::shift_hue_pixel(r[i], r[plane + i], r[2 * plane + i], shift_data[n]);
        }
      }
    });
    return out;
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
  TORCH_CHECK((sigma > 0).all().item<bool>(), kWhere, ": expected sigmas > 0");
  const int64_t b = images.size(0), c = images.size(1);
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
  return torch::where(flip.to(images.device(), torch::kBool).view({-1, 1, 1, 1}), images.flip(3),
                      images);
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
  const auto options = images.options();
  const auto m = torch::tensor(mean, torch::kDouble).to(options).view({1, -1, 1, 1});
  const auto s = torch::tensor(std, torch::kDouble).to(options).view({1, -1, 1, 1});
  return (images - m) / s;
}

namespace detail {

/// The bilinear gather of `resized_crop` as one loop over output pixels (CPU, contiguous uint8
/// or float32 input, float32 output), same arithmetic order as the tensor path.
template <class T>
torch::Tensor resized_crop_cpu(const torch::Tensor& images, int64_t size, const torch::Tensor& y0,
                               const torch::Tensor& y1, const torch::Tensor& ly0,
                               const torch::Tensor& ly1, const torch::Tensor& x0,
                               const torch::Tensor& x1, const torch::Tensor& lx0,
                               const torch::Tensor& lx1) {
  const int64_t b = images.size(0), c = images.size(1), height = images.size(2),
                width = images.size(3);
  auto out = torch::empty({b, c, size, size}, torch::kFloat);
  const torch::Tensor iy0 = y0.contiguous(), iy1 = y1.contiguous(), ix0 = x0.contiguous(),
                      ix1 = x1.contiguous();
  const torch::Tensor wy0 = ly0.contiguous(), wy1 = ly1.contiguous(), wx0 = lx0.contiguous(),
                      wx1 = lx1.contiguous();
  const T* in = images.data_ptr<T>();
  float* dst = out.data_ptr<float>();
  const int64_t *y0p = iy0.data_ptr<int64_t>(), *y1p = iy1.data_ptr<int64_t>(),
                *x0p = ix0.data_ptr<int64_t>(), *x1p = ix1.data_ptr<int64_t>();
  const float *fy0p = wy0.data_ptr<float>(), *fy1p = wy1.data_ptr<float>(),
              *fx0p = wx0.data_ptr<float>(), *fx1p = wx1.data_ptr<float>();
  const float scale = std::is_same_v<T, uint8_t> ? 1.0f / 255.0f : 1.0f;
  at::parallel_for(0, b * c, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / c;
      const T* src = in + plane * height * width;
      float* o = dst + plane * size * size;
      const int64_t *ya = y0p + n * size, *yb = y1p + n * size, *xa = x0p + n * size,
                    *xb = x1p + n * size;
      const float *fy0 = fy0p + n * size, *fy1 = fy1p + n * size, *fx0 = fx0p + n * size,
                  *fx1 = fx1p + n * size;
      for (int64_t oy = 0; oy < size; ++oy) {
        const T* r0 = src + ya[oy] * width;
        const T* r1 = src + yb[oy] * width;
        for (int64_t ox = 0; ox < size; ++ox) {
          const float p00 = static_cast<float>(r0[xa[ox]]) * scale;
          const float p01 = static_cast<float>(r0[xb[ox]]) * scale;
          const float p10 = static_cast<float>(r1[xa[ox]]) * scale;
          const float p11 = static_cast<float>(r1[xb[ox]]) * scale;
          const float top = fx0[ox] * p00 + fx1[ox] * p01;
          const float bottom = fx0[ox] * p10 + fx1[ox] * p11;
          o[oy * size + ox] = fy0[oy] * top + fy1[oy] * bottom;
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
/// uint8 or float images; returns float images in [0, 1] (uint8 values are divided by 255).
inline torch::Tensor resized_crop(const torch::Tensor& images, const torch::Tensor& boxes,
                                  int64_t size, torch::ScalarType dtype = torch::kFloat) {
  constexpr const char* kWhere = "simsiam::augment::resized_crop";
  TORCH_CHECK(images.defined() && images.dim() == 4, kWhere, ": expected images [B, C, H, W], got ",
              simsiam::detail::shape_string(images));
  TORCH_CHECK(size > 0, kWhere, ": expected size > 0, got ", size);
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(0) == images.size(0) && boxes.size(1) == 4, kWhere,
              ": expected boxes [", images.size(0), ", 4] (top, left, height, width), got ",
              simsiam::detail::shape_string(boxes));
  const int64_t height = images.size(2), width = images.size(3);
  const auto box = boxes.to(images.device(), torch::kLong);
  const auto top = box.select(1, 0), left = box.select(1, 1), h = box.select(1, 2),
             w = box.select(1, 3);
  TORCH_CHECK(
      ((h > 0) & (w > 0) & (top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width))
          .all()
          .item<bool>(),
      kWhere, ": expected boxes inside the ", height, "x", width, " images");
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
  if (images.device().is_cpu() && images.is_contiguous() && dtype == torch::kFloat &&
      (images.scalar_type() == torch::kByte || images.scalar_type() == torch::kFloat)) {
    return images.scalar_type() == torch::kByte
               ? detail::resized_crop_cpu<uint8_t>(images, size, y0, y1, ly0, ly1, x0, x1, lx0, lx1)
               : detail::resized_crop_cpu<float>(images, size, y0, y1, ly0, ly1, x0, x1, lx0, lx1);
  }
  const auto as_float = [&](const torch::Tensor& t) {
    return images.is_floating_point() ? t.to(dtype) : t.to(dtype).div_(255.0);
  };
  const auto out_type = torch::TensorOptions().dtype(dtype).device(images.device());
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
  return ly0.to(out_type).view({b, 1, size, 1}) * top_row +
         ly1.to(out_type).view({b, 1, size, 1}) * bottom_row;
}

}  // namespace simsiam::augment::functional
