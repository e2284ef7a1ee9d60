// SPDX-License-Identifier: BSD-3-Clause
/// @file
/// @brief Decodes an image file by its content (JPEG or PNG), whatever its name says.
///
/// ImageNet's training set holds a PNG named `.JPEG` and CMYK JPEGs; both decode here. Needs
/// zlib and libjpeg-turbo: link `SimSiam::data`.
#pragma once

#include <string>

#include "simsiam/data/jpeg.hpp"
#include "simsiam/data/png.hpp"

namespace simsiam {

/// uint8 RGB [3, H, W] from JPEG or PNG bytes; anything else fails naming `name`.
inline torch::Tensor decode_image(const std::string& bytes,
                                  const std::string& name = "image data") {
  if (detail::is_jpeg(bytes)) return decode_jpeg(bytes, name);
  if (detail::is_png(bytes)) return decode_png(bytes, name);
  TORCH_CHECK(false, "simsiam::decode_image: ", name, " is not a JPEG or PNG image",
              bytes.empty() ? " (it is empty)" : "");
}

/// Reads and decodes an image file (see `decode_image`).
inline torch::Tensor read_image(const std::string& path) {
  return decode_image(detail::read_file_bytes(path, "simsiam::read_image"), "'" + path + "'");
}

/// Writes `image` (uint8 [C, H, W], C = 1 or 3) to `path` atomically as a JPEG of `quality`.
inline void write_jpeg(const torch::Tensor& image, const std::string& path, int quality = 90) {
  detail::write_file_atomically(encode_jpeg(image, quality), path, "simsiam::write_jpeg");
}

}  // namespace simsiam
