/// @file
/// @brief JPEG decoding to RGB with libjpeg-turbo, optionally scaled in the DCT domain.
///
/// Needs libjpeg-turbo's TurboJPEG API: link `SimSiam::data`. Greyscale, YCbCr and CMYK/YCCK
/// JPEGs all become uint8 RGB [3, H, W], as PIL's `convert("RGB")` gives them to torchvision
/// (CMYK as Adobe stores it, inverted: R = C * K / 255). Decoding at 1/2, 1/4 or 1/8 of the
/// size happens inside the inverse DCT, several times faster than decoding and then shrinking.
#pragma once

#include <torch/torch.h>
#include <turbojpeg.h>

#include <cstdint>
#include <memory>
#include <string>

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

inline TurboHandle turbo_decompressor() {
  TurboHandle handle(tjInitDecompress(), tjDestroy);
  TORCH_CHECK(handle,
              "simsiam::decode_jpeg: libjpeg-turbo could not start: ", tjGetErrorStr2(nullptr));
  return handle;
}

/// Width and height of a JPEG when decoded at 1/`denominator` (libjpeg-turbo rounds up).
inline int scaled_side(int side, int denominator) { return (side + denominator - 1) / denominator; }

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
  auto handle = detail::turbo_decompressor();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  const int status = tjDecompressHeader3(
      handle.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
      static_cast<unsigned long>(bytes.size()), &width, &height, &subsampling, &colorspace);
  TORCH_CHECK(
      status == 0, "simsiam::decode_jpeg: ", name,
      " is truncated or has a corrupt header (libjpeg-turbo: ", tjGetErrorStr2(handle.get()), ")");
  return {width, height, colorspace == TJCS_CMYK || colorspace == TJCS_YCCK};
}

/// Decodes a JPEG held in memory to uint8 RGB [3, H', W'], where H' and W' are the size divided
/// by `denominator` (1, 2, 4 or 8) and rounded up. A truncated or corrupt file is an error naming
/// `name`; libjpeg's recoverable warnings (e.g. extraneous bytes before a marker, which PIL
/// also accepts) are not.
inline torch::Tensor decode_jpeg(const std::string& bytes, const std::string& name = "JPEG data",
                                 int denominator = 1) {
  constexpr const char* kWhere = "simsiam::decode_jpeg";
  TORCH_CHECK(denominator == 1 || denominator == 2 || denominator == 4 || denominator == 8, kWhere,
              ": expected a scale denominator of 1, 2, 4 or 8, got ", denominator);
  const auto header = jpeg_header(bytes, name);
  auto handle = detail::turbo_decompressor();
  const int width = detail::scaled_side(header.width, denominator),
            height = detail::scaled_side(header.height, denominator);
  const int format = header.cmyk ? TJPF_CMYK : TJPF_RGB;
  const int64_t channels = header.cmyk ? 4 : 3;
  auto hwc = torch::empty({height, width, channels}, torch::kUInt8);
  const int status =
      tjDecompress2(handle.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    static_cast<unsigned long>(bytes.size()), hwc.data_ptr<uint8_t>(), width, 0,
                    height, format, 0);
  if (status != 0) {  // the message is only this handle's after a failure (else a global one)
    const std::string message = tjGetErrorStr2(handle.get());
    const bool warning = tjGetErrorCode(handle.get()) == TJERR_WARNING;
    const bool truncated = message.find("Premature end") != std::string::npos;
    TORCH_CHECK(warning && !truncated, kWhere, ": ", name, " is ",
                truncated ? "truncated" : "corrupt", " (libjpeg-turbo: ", message, ")");
  }
  if (!header.cmyk) return hwc.permute({2, 0, 1}).contiguous();
  // Adobe CMYK is stored inverted: R = C * K / 255 (rounded), as PIL computes it.
  const auto wide = hwc.to(torch::kInt32);
  const auto k = wide.select(2, 3).unsqueeze(2);
  return ((wide.narrow(2, 0, 3) * k + 127) / 255).to(torch::kUInt8).permute({2, 0, 1}).contiguous();
}

/// Reads and decodes a JPEG file (see `decode_jpeg`).
inline torch::Tensor read_jpeg(const std::string& path, int denominator = 1) {
  return decode_jpeg(detail::read_file_bytes(path, "simsiam::read_jpeg"), "'" + path + "'",
                     denominator);
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
