// SPDX-License-Identifier: BSD-3-Clause
// Input pipeline throughput: JPEG decode + RandomResizedCrop(224) + flip, two views per image,
// through simsiam::Loader with 1 and 2 worker threads, with and without DCT-scaled decoding,
// as float32 crops flipped on the CPU (the CPU path) or bare uint8 crops (what a GPU is fed).
// The folder (10 classes x 24 JPEGs of 500x375, quality 90, photo-like content) is generated
// on first use at $SIMSIAM_BENCH_FOLDER (default /tmp/simsiam_bench_jpegs); the torchvision
// reference (benchmarks/bench_data_reference.py) reads the same folder.
//
//   build/benchmarks/bench_data --benchmark_min_time=3
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/folder_source.hpp>
#include <simsiam/data/loader.hpp>

namespace {

namespace A = simsiam::augment;
namespace fs = std::filesystem;

std::string bench_folder() {
  const char* env = std::getenv("SIMSIAM_BENCH_FOLDER");
  const std::string root = env ? env : "/tmp/simsiam_bench_jpegs";
  if (fs::exists(fs::path(root) / "class_9" / "image_23.jpg")) return root;
  auto gen = at::detail::createCPUGenerator(0);
  for (int c = 0; c < 10; ++c) {
    for (int i = 0; i < 24; ++i) {
      // Smooth colour fields plus fine texture: JPEG sizes like a photograph's (~60-90 KB).
      const auto coarse = torch::rand({1, 3, 12, 16}, gen);
      auto image =
          torch::nn::functional::interpolate(coarse, torch::nn::functional::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{375, 500})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false))[0];
      image = (image * 200 + torch::rand({3, 375, 500}, gen) * 55).clamp(0, 255);
      const auto dir = fs::path(root) / ("class_" + std::to_string(c));
      fs::create_directories(dir);
      const auto bytes = simsiam::encode_jpeg(image.round().to(torch::kUInt8), 90);
      std::ofstream(dir / ("image_" + std::to_string(i) + ".jpg"), std::ios::binary)
          .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
  }
  return root;
}

/// Keeps the crops as they are: a GPU run flips (and the rest) on the device.
struct CropOnly {
  torch::Tensor operator()(const torch::Tensor& views, torch::Generator& /*generator*/) const {
    return views;
  }
};

template <class Post>
void run_loader(benchmark::State& state, Post post, torch::ScalarType dtype) {
  const auto workers = state.range(0);
  const bool scaled = state.range(1) != 0;
  using Source = simsiam::FolderSource<Post>;
  simsiam::LoaderOptions options;
  options.batch_size(24);
  options.workers(workers);
  const auto crop =
      A::RandomResizedCrop(A::RandomResizedCropOptions(224).scale({0.2, 1.0}).dtype(dtype));
  simsiam::Loader<Source> loader(Source{simsiam::ImageFolder(bench_folder()),
                                        simsiam::DecodedViews{crop, scaled}, std::move(post)},
                                 options);
  int64_t images = 0, epoch = 0;
  for (auto _ : state) {
    loader.set_epoch(epoch++);
    while (auto batch = loader.next()) {
      images += batch->view1.size(0);
      benchmark::DoNotOptimize(batch->view2.data_ptr());
    }
  }
  state.SetItemsProcessed(images);
  state.counters["wait_fraction"] = loader.stats().wait_fraction();
}

/// The CPU path: float32 crops, flipped on the loader's threads.
void BM_LoaderTwoViews224(benchmark::State& state) {
  run_loader(state, A::Compose<A::RandomHorizontalFlip>(A::RandomHorizontalFlip(0.5)),
             torch::kFloat);
}

/// What a GPU is fed: uint8 crops, nothing else on the CPU.
void BM_LoaderTwoViews224Uint8(benchmark::State& state) {
  run_loader(state, CropOnly{}, torch::kByte);
}

}  // namespace

BENCHMARK(BM_LoaderTwoViews224)
    ->ArgNames({"workers", "scaled_decode"})
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoaderTwoViews224Uint8)
    ->ArgNames({"workers", "scaled_decode"})
    ->ArgsProduct({{1, 2}, {1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) { return run_benchmarks(argc, argv); }
