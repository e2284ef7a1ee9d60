// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief JPEG decoding to RGB with libjpeg-turbo, optionally scaled in the DCT domain.
///
/// Needs libjpeg-turbo's TurboJPEG API: link `SimSiam::data`. Greyscale, YCbCr and CMYK/YCCK
/// JPEGs all become uint8 RGB [3, H, W], as PIL's `convert("RGB")` gives them to torchvision
/// (CMYK as Adobe stores it, inverted: R = C * K / 255). Decoding at M/8 of the size (M = 1..8)
/// happens inside the inverse DCT, faster than decoding and then shrinking.
#pragma once

#include <torch/torch.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "simsiam/data/idx.hpp"
#include "simsiam/detail/check.hpp"

namespace simsiam {

namespace detail {

inline bool is_jpeg(const std::string& bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
         static_cast<unsigned char>(bytes[1]) == 0xD8 &&
         static_cast<unsigned char>(bytes[2]) == 0xFF;
}

using TurboHandle = std::unique_ptr<void, int (*)(tjhandle)>;

/// This thread's decompressor, created on first use and kept: creating one per image costs
/// more than decoding a small JPEG. `fresh` replaces it (after a failure, libjpeg-turbo's
/// handle may keep state from the failed image).
inline tjhandle turbo_decompressor(bool fresh = false) {
  thread_local TurboHandle handle(nullptr, tjDestroy);
  if (!handle || fresh) handle.reset(tjInitDecompress());
  TORCH_CHECK(handle,
              "simsiam::decode_jpeg: libjpeg-turbo could not start: ", tjGetErrorStr2(nullptr));
  return handle.get();
}

/// Interleaved HWC pixels (`channels` per pixel) to uint8 planes [3, H, W]: RGB as they are,
/// Adobe CMYK (stored inverted) as R = C * K / 255 rounded, as PIL converts it.
inline torch::Tensor to_planes(const uint8_t* hwc, int64_t height, int64_t width, int channels) {
  auto out = torch::empty({3, height, width}, torch::kUInt8);
  const int64_t plane = height * width;
  uint8_t* r = out.data_ptr<uint8_t>();
  uint8_t* g = r + plane;
  uint8_t* b = g + plane;
  if (channels == 3) {
    for (int64_t i = 0; i < plane; ++i) {
      r[i] = hwc[3 * i];
      g[i] = hwc[3 * i + 1];
      b[i] = hwc[3 * i + 2];
    }
  } else {
    const auto scale = [](unsigned value, unsigned k) {
      return static_cast<uint8_t>((value * k + 127) / 255);
    };
    for (int64_t i = 0; i < plane; ++i) {
      const unsigned k = hwc[4 * i + 3];
      r[i] = scale(hwc[4 * i], k);
      g[i] = scale(hwc[4 * i + 1], k);
      b[i] = scale(hwc[4 * i + 2], k);
    }
  }
  return out;
}

/// A side of a JPEG decoded at `eighths`/8 of its size (libjpeg-turbo's TJSCALED: rounded up).
inline int scaled_side(int side, int eighths) { return (side * eighths + 7) / 8; }

}  // namespace detail

/// Size and colour information read from a JPEG header without decoding it.
struct JpegHeader {
  int width = 0, height = 0;
  bool cmyk = false;
};

/// Reads a JPEG's header; fails naming `name` when the data is not a JPEG.
inline JpegHeader jpeg_header(const std::string& bytes, const std::string& name = "JPEG data") {
  TORCH_CHECK(detail::is_jpeg(bytes), "simsiam::decode_jpeg: ", name,
              " is not a JPEG (no start-of-image marker)");
  tjhandle handle = detail::turbo_decompressor();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  const int status = tjDecompressHeader3(
      handle, reinterpret_cast<const unsigned char*>(bytes.data()),
      static_cast<unsigned long>(bytes.size()), &width, &height, &subsampling, &colorspace);
  if (status != 0) {
    const std::string message = tjGetErrorStr2(handle);
    detail::turbo_decompressor(/*fresh=*/true);
    TORCH_CHECK(false, "simsiam::decode_jpeg: ", name,
                " is truncated or has a corrupt header (libjpeg-turbo: ", message, ")");
  }
  return {width, height, colorspace == TJCS_CMYK || colorspace == TJCS_YCCK};
}

/// Decodes a JPEG held in memory to uint8 RGB [3, H', W'], where H' and W' are the size times
/// `eighths`/8 (1-8; libjpeg-turbo scales inside the inverse DCT) rounded up. A truncated or
/// corrupt file is an error naming `name`; libjpeg's recoverable warnings (e.g. extraneous bytes
/// before a marker, which PIL also accepts) are not.
/// `header` is `jpeg_header(bytes)`, when the caller has read it already.
inline torch::Tensor decode_jpeg(const std::string& bytes, const JpegHeader& header,
                                 const std::string& name, int eighths) {
  constexpr const char* kWhere = "simsiam::decode_jpeg";
  TORCH_CHECK(eighths >= 1 && eighths <= 8, kWhere, ": expected a scale of 1 to 8 eighths, got ",
              eighths);
  tjhandle handle = detail::turbo_decompressor();
  const int width = detail::scaled_side(header.width, eighths),
            height = detail::scaled_side(header.height, eighths);
  const int format = header.cmyk ? TJPF_CMYK : TJPF_RGB;
  // Guard against corrupt headers before allocating: at most 2^28 pixels, and at most 16384
  // pixels per byte of file (a uniform progressive JPEG, the most compressible kind, stays far
  // below that).
  const double pixels = static_cast<double>(header.width) * header.height;
  TORCH_CHECK(
      pixels <= std::min(268435456.0, 16384.0 * static_cast<double>(bytes.size()) + 1048576.0),
      kWhere, ": ", name, " is truncated or corrupt: its header declares ", header.width, "x",
      header.height, " pixels in ", bytes.size(), " bytes");
  const int channels = header.cmyk ? 4 : 3;
  thread_local std::vector<uint8_t> hwc;  // reused: the decoder writes interleaved pixels
  hwc.resize(static_cast<size_t>(height) * width * channels);
  const int status = tjDecompress2(handle, reinterpret_cast<const unsigned char*>(bytes.data()),
                                   static_cast<unsigned long>(bytes.size()), hwc.data(), width, 0,
                                   height, format, 0);
  if (status != 0) {  // the message is only this handle's after a failure (else a global one)
    const std::string message = tjGetErrorStr2(handle);
    const bool warning = tjGetErrorCode(handle) == TJERR_WARNING;
    const bool truncated = message.find("Premature end") != std::string::npos;
    if (!warning || truncated) detail::turbo_decompressor(/*fresh=*/true);
    TORCH_CHECK(warning && !truncated, kWhere, ": ", name, " is ",
                truncated ? "truncated" : "corrupt", " (libjpeg-turbo: ", message, ")");
  }
  return detail::to_planes(hwc.data(), height, width, channels);
}

/// `decode_jpeg`, reading the header itself.
inline torch::Tensor decode_jpeg(const std::string& bytes, const std::string& name = "JPEG data",
                                 int eighths = 8) {
  return decode_jpeg(bytes, jpeg_header(bytes, name), name, eighths);
}

/// Reads and decodes a JPEG file (see `decode_jpeg`).
inline torch::Tensor read_jpeg(const std::string& path, int eighths = 8) {
  return decode_jpeg(detail::read_file_bytes(path, "simsiam::read_jpeg"), "'" + path + "'",
                     eighths);
}

/// Encodes uint8 [C, H, W] (C = 1 grey or 3 RGB) as a baseline JPEG of the given quality
/// (1-100) with 4:2:0 chroma subsampling for colour, as PIL saves by default.
inline std::string encode_jpeg(const torch::Tensor& image, int quality = 90) {
  constexpr const char* kWhere = "simsiam::encode_jpeg";
  TORCH_CHECK(image.defined() && image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) &&
                  image.scalar_type() == torch::kUInt8 && image.numel() > 0,
              kWhere, ": expected a uint8 image [C, H, W] with C = 1 or 3, got ",
              simsiam::detail::shape_string(image), " ", image.scalar_type());
  TORCH_CHECK(quality >= 1 && quality <= 100, kWhere, ": expected a quality in [1, 100], got ",
              quality);
  const auto hwc = image.permute({1, 2, 0}).contiguous().cpu();
  const bool grey = image.size(0) == 1;
  std::unique_ptr<void, int (*)(tjhandle)> handle(tjInitCompress(), tjDestroy);
  TORCH_CHECK(handle, kWhere, ": libjpeg-turbo could not start: ", tjGetErrorStr2(nullptr));
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int status =
      tjCompress2(handle.get(), hwc.data_ptr<uint8_t>(), static_cast<int>(image.size(2)), 0,
                  static_cast<int>(image.size(1)), grey ? TJPF_GRAY : TJPF_RGB, &buffer, &size,
                  grey ? TJSAMP_GRAY : TJSAMP_420, quality, 0);
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
  TORCH_CHECK(status == 0, kWhere, ": libjpeg-turbo failed: ", tjGetErrorStr2(handle.get()));
  return std::string(reinterpret_cast<const char*>(buffer), size);
}

}  // namespace simsiam
