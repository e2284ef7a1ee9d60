// SPDX-License-Identifier: BSD-3-Clause
// Picture grids of SimSiam's two views: for each image, the original and two augmented views
// side by side, written as PNG (Fashion-MNIST) and JPEG (photographs). One grid for Fashion-MNIST
// (simsiam_grayscale) and one for colour photographs (simsiam_imagenet). The photographs default to
// those Debian's python3-skimage package ships (apt-get install -y python3-skimage); any JPEG or
// PNG files can be given instead.
//
//   build/examples/augment_grid --out docs/images
#include <CLI/CLI.hpp>
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/idx.hpp>
#include <simsiam/data/image.hpp>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace A = simsiam::augment;

namespace {

/// Undoes Normalize and converts [B, C, S, S] floats to uint8 [B, 3, S, S].
torch::Tensor to_pixels(const torch::Tensor& views, const std::vector<double>& mean,
                        const std::vector<double>& std) {
  const auto m = torch::tensor(mean, torch::kDouble).view({1, -1, 1, 1});
  const auto s = torch::tensor(std, torch::kDouble).view({1, -1, 1, 1});
  const auto x = (views.to(torch::kDouble) * s + m).clamp(0.0, 1.0);
  return (x * 255.0).round().to(torch::kUInt8).expand({-1, 3, -1, -1});
}

/// Rows of (original, view 1, view 2) separated by white gaps, each tile enlarged `zoom` times.
torch::Tensor grid(const std::vector<torch::Tensor>& columns, int64_t zoom) {
  constexpr int64_t kGap = 6;
  const int64_t rows = columns.front().size(0), side = columns.front().size(2) * zoom;
  const auto cols = static_cast<int64_t>(columns.size());
  auto canvas = torch::full({3, rows * (side + kGap) + kGap, cols * (side + kGap) + kGap}, 255,
                            torch::kUInt8);
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) {
      const auto tile = columns[c][r].repeat_interleave(zoom, 1).repeat_interleave(zoom, 2);
      canvas.narrow(1, kGap + r * (side + kGap), side)
          .narrow(2, kGap + c * (side + kGap), side)
          .copy_(tile);
    }
  }
  return canvas;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes picture grids of SimSiam's two augmented views"};
  std::string data = "/usr/share/datasets/fashion-mnist";
  const std::string skimage = "/usr/lib/python3/dist-packages/skimage/data/";
  std::vector<std::string> photos{skimage + "astronaut.png", skimage + "chelsea.png",
                                  skimage + "coffee.png", skimage + "rocket.jpg"};
  std::string out = "docs/images";
  uint64_t seed = 3;
  int64_t count = 6;
  app.add_option("--data", data, "Fashion-MNIST folder (IDX files, gzip or raw)");
  app.add_option("--photos", photos, "colour photographs (JPEG or PNG)");
  app.add_option("--out", out, "output folder");
  app.add_option("--count", count, "Fashion-MNIST images in the grid")->check(CLI::Range(1, 64));
  app.add_option("--seed", seed, "seed of the augmentation generator");
  CLI11_PARSE(app, argc, argv);

  try {
    std::filesystem::create_directories(out);
    auto generator = at::detail::createCPUGenerator(seed);

    const auto test = simsiam::read_mnist(data, /*train=*/false);
    const auto originals = test.images.narrow(0, 0, count);
    const auto gray = A::TwoViews(A::simsiam_grayscale(28));
    const auto [g1, g2] = gray(originals, generator);
    const auto fmnist = grid({originals.expand({-1, 3, -1, -1}),
                              to_pixels(g1, A::kFashionMnistMean, A::kFashionMnistStd),
                              to_pixels(g2, A::kFashionMnistMean, A::kFashionMnistStd)},
                             4);
    simsiam::write_png(fmnist, out + "/views_fashion_mnist.png");

    std::vector<torch::Tensor> images;
    std::vector<torch::Tensor> whole;  // each photograph resized to 224 x 224 for the first column
    for (const auto& path : photos) {
      images.push_back(simsiam::read_image(path));
      const auto image = images.back().unsqueeze(0);
      const auto box = torch::tensor({{int64_t{0}, int64_t{0}, image.size(2), image.size(3)}});
      whole.push_back(A::functional::resized_crop(image, box, 224));
    }
    const auto colour = A::TwoViews(A::simsiam_imagenet(224));
    const auto [c1, c2] = colour(images, generator);
    const auto originals_rgb = (torch::cat(whole) * 255.0).round().to(torch::kUInt8);
    const auto photo_grid = grid({originals_rgb, to_pixels(c1, A::kImageNetMean, A::kImageNetStd),
                                  to_pixels(c2, A::kImageNetMean, A::kImageNetStd)},
                                 1);
    simsiam::write_jpeg(photo_grid, out + "/views_photos.jpg", 90);
    std::cout << "wrote " << out << "/views_fashion_mnist.png and " << out << "/views_photos.jpg\n";
  } catch (const c10::Error& error) {
    std::cerr << "augment_grid: " << error.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "augment_grid: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
