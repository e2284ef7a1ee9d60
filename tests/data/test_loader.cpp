// SPDX-License-Identifier: BSD-3-Clause
// ImageFolder scanning and its index cache, scaled JPEG decoding of the crops, CIFAR-10 files,
// DistributedSampler-equal sharding, and the loader: order, determinism, bad images.
#include "simsiam/data/folder_source.hpp"
#include "simsiam/data/loader.hpp"
#include "simsiam/data/tensor_source.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "simsiam/augment/presets.hpp"
#include "simsiam/data/cifar.hpp"
#include "support/catch.hpp"

namespace {

namespace fs = std::filesystem;
namespace A = simsiam::augment;

/// A fresh scratch folder under the system temp directory.
fs::path scratch(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("simsiam_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A smooth colour image [3, h, w] whose brightness encodes `tone` (an easy class signal).
torch::Tensor photo(int64_t h, int64_t w, double tone) {
  auto y = torch::linspace(0, 1, h).view({1, h, 1}).expand({1, h, w});
  auto x = torch::linspace(0, 1, w).view({1, 1, w}).expand({1, h, w});
  auto rgb = torch::cat({tone * 200 + 40 * x, 120 + 80 * y, 200 - 100 * x * y});
  return rgb.clamp(0, 255).round().to(torch::kUInt8);
}

/// root/{cat,dog,emu}: JPEGs of several sizes, a PNG, a PNG named .JPEG, a CMYK JPEG, files in a
/// subfolder, a text file that is not collected, and (when `with_bad`) a truncated JPEG and an
/// empty file, which are collected and fail at load time.
fs::path make_tree(const std::string& name, bool with_bad) {
  const auto root = scratch(name);
  write(root / "cat" / "b.jpg", simsiam::encode_jpeg(photo(90, 120, 0.1)));
  write(root / "cat" / "a.JPEG", simsiam::encode_jpeg(photo(375, 500, 0.1)));
  write(root / "cat" / "sub" / "c.png", simsiam::encode_png(photo(40, 30, 0.1)));
  write(root / "dog" / "d.jpeg", simsiam::encode_jpeg(photo(64, 64, 0.9)));
  write(root / "dog" / "e.JPEG", simsiam::encode_png(photo(50, 70, 0.9)));  // PNG named .JPEG
  write(root / "dog" / "notes.txt", "not an image");
  fs::create_directories(root / "emu");
  fs::copy_file(std::string(SIMSIAM_FIXTURES_DIR) + "/images/cmyk.jpg", root / "emu" / "f.jpg");
  write(root / "emu" / "g.jpg", simsiam::encode_jpeg(photo(48, 40, 0.5)));
  if (with_bad) {
    const auto whole = simsiam::encode_jpeg(photo(60, 80, 0.9));
    write(root / "dog" / "truncated.jpg", whole.substr(0, whole.size() / 2));
    write(root / "emu" / "zero.jpg", "");
  }
  return root;
}

}  // namespace

TEST_CASE("ImageFolder labels sorted class folders and finds images as torchvision does",
          "[data][folder]") {
  const auto root = make_tree("folder", /*with_bad=*/false);
  const simsiam::ImageFolder folder(root.string());
  CHECK(folder.classes() == std::vector<std::string>{"cat", "dog", "emu"});
  REQUIRE(folder.size() == 7);
  const std::vector<std::string> expected{"cat/a.JPEG", "cat/b.jpg", "cat/sub/c.png", "dog/d.jpeg",
                                          "dog/e.JPEG", "emu/f.jpg", "emu/g.jpg"};
  const std::vector<int64_t> labels{0, 0, 0, 1, 1, 2, 2};
  for (int64_t i = 0; i < folder.size(); ++i) {
    CHECK(folder.relative_path(i) == expected[static_cast<size_t>(i)]);
    CHECK(folder.label(i) == labels[static_cast<size_t>(i)]);
    const auto image = simsiam::decode_image(folder.read(i), folder.path(i));
    CHECK(image.size(0) == 3);  // every kind decodes to RGB, the CMYK JPEG included
  }
  fs::remove_all(root);
}

TEST_CASE("ImageFolder's index cache skips the scan until a class folder changes",
          "[data][folder]") {
  const auto root = make_tree("cache", false);
  const auto cache = (root.parent_path() / "simsiam_test_cache.index").string();
  fs::remove(cache);
  simsiam::ImageFolderOptions options;
  options.index_cache(cache);
  const simsiam::ImageFolder first(root.string(), options);
  CHECK_FALSE(first.from_cache());
  REQUIRE(fs::exists(cache));
  const simsiam::ImageFolder second(root.string(), options);
  CHECK(second.from_cache());
  CHECK(second.size() == first.size());
  CHECK(second.relative_path(2) == "cat/sub/c.png");
  CHECK(second.label(6) == 2);
  // A new file changes its folder's modification time: the cache is stale, the scan runs again.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write(root / "dog" / "h.jpg", simsiam::encode_jpeg(photo(32, 32, 0.9)));
  const simsiam::ImageFolder third(root.string(), options);
  CHECK_FALSE(third.from_cache());
  CHECK(third.size() == first.size() + 1);
  fs::remove(cache);
  fs::remove_all(root);
}

TEST_CASE("ImageFolder scanning errors name the path", "[data][folder][errors]") {
  const auto root = scratch("folder_errors");
  CHECK_THROWS_WITH(simsiam::ImageFolder((root / "missing").string()),
                    Contains("missing' is not a directory"));
  CHECK_THROWS_WITH(simsiam::ImageFolder(root.string()),
                    Contains("found no class folders in '" + root.string()));
  write(root / "cat" / "a.jpg", simsiam::encode_jpeg(photo(16, 16, 0.1)));
  write(root / "dog" / "readme.txt", "no images here");
  CHECK_THROWS_WITH(
      simsiam::ImageFolder(root.string()),
      Contains("class folder '" + (root / "dog").string() + "' holds no image files"));
  fs::remove_all(root);
}

TEST_CASE("crops decode at a reduced DCT scale when they allow it, with the same result",
          "[data][folder]") {
  const auto bytes = simsiam::encode_jpeg(photo(375, 500, 0.4), 95);
  const simsiam::DecodedViews scaled{A::RandomResizedCrop(32, {0.2, 1.0}), true};
  const simsiam::DecodedViews full{A::RandomResizedCrop(32, {0.2, 1.0}), false};
  for (uint64_t seed = 0; seed < 8; ++seed) {
    auto g0 = at::detail::createCPUGenerator(seed), g1 = at::detail::createCPUGenerator(seed),
         g2 = at::detail::createCPUGenerator(seed);  // (Generator::clone leaks in LibTorch 1.13)
    const auto boxes = scaled.crop.sample_boxes(2, 375, 500, g0);
    // Crops of >= 0.2 of 500x375 are >= ~150 px: for an output of 32, 1/4 or 1/2 of the size.
    CHECK(simsiam::jpeg_eighths(boxes, 32) <= 4);
    const auto [a1, a2] = scaled(bytes, "photo", g1);
    const auto [b1, b2] = full(bytes, "photo", g2);
    CHECK(a1.sizes() == torch::IntArrayRef({3, 32, 32}));
    CHECK((a1 - b1).abs().mean().item<float>() < 0.02f);  // same crop, decoded smaller
    CHECK((a2 - b2).abs().mean().item<float>() < 0.02f);
  }
  // uint8 crops (to send to a GPU): the same crops, within rounding of the float ones x 255.
  const simsiam::DecodedViews bytes_out{
      A::RandomResizedCrop(A::RandomResizedCropOptions(32).scale({0.2, 1.0}).dtype(torch::kByte)),
      true};
  auto g3 = at::detail::createCPUGenerator(5), g4 = at::detail::createCPUGenerator(5);
  const auto [c1, c2] = bytes_out(bytes, "photo", g3);
  const auto [d1, d2] = scaled(bytes, "photo", g4);
  CHECK(c1.scalar_type() == torch::kByte);
  CHECK((c1.to(torch::kFloat) - d1 * 255).abs().max().item<float>() <= 0.5f + 1e-3f);
  CHECK((c2.to(torch::kFloat) - d2 * 255).abs().max().item<float>() <= 0.5f + 1e-3f);
  // Only the fast scales: 300 px for 224 stays at full size; 450 px takes 1/2; 2000 px 1/8.
  CHECK(simsiam::jpeg_eighths(torch::tensor({{0, 0, 300, 400}}, torch::kLong), 224) == 8);
  CHECK(simsiam::jpeg_eighths(torch::tensor({{0, 0, 450, 500}}, torch::kLong), 224) == 4);
  CHECK(simsiam::jpeg_eighths(torch::tensor({{0, 0, 900, 1000}}, torch::kLong), 224) == 2);
  CHECK(simsiam::jpeg_eighths(torch::tensor({{0, 0, 2000, 1800}}, torch::kLong), 224) == 1);
  CHECK(simsiam::jpeg_eighths(torch::tensor({{0, 0, 100, 90}}, torch::kLong), 224) == 8);
}

TEST_CASE("CIFAR-10 batches read as [N, 3, 32, 32] with labels, and bad files fail",
          "[data][cifar][errors]") {
  const auto dir = scratch("cifar");
  std::string records;
  for (int i = 0; i < 3; ++i) {
    records.push_back(static_cast<char>(7 - i));
    for (int j = 0; j < 3072; ++j) records.push_back(static_cast<char>((j / 1024) * 50 + i));
  }
  write(dir / "test_batch.bin", records);
  const auto test = simsiam::read_cifar10(dir.string(), /*train=*/false);
  CHECK(test.images.sizes() == torch::IntArrayRef({3, 3, 32, 32}));
  CHECK(torch::equal(test.labels, torch::tensor({7, 6, 5}, torch::kLong)));
  CHECK(test.images[1][2][31][31].item<int>() == 101);  // blue plane of record 1
  write(dir / "cut.bin", records.substr(0, records.size() - 5));
  CHECK_THROWS_WITH(simsiam::read_cifar10_batch((dir / "cut.bin").string()),
                    Contains("cut.bin' is truncated or not a CIFAR-10 binary batch"));
  records[0] = 12;
  write(dir / "label.bin", records);
  CHECK_THROWS_WITH(simsiam::read_cifar10_batch((dir / "label.bin").string()),
                    Contains("label 12 (expected 0-9)"));
  CHECK_THROWS_WITH(simsiam::read_cifar10(dir.string(), true),
                    Contains("data_batch_1.bin': no such file"));
  fs::remove_all(dir);
}

TEST_CASE("shards equal PyTorch's DistributedSampler and cover the data", "[data][loader]") {
  // torch.utils.data.distributed.DistributedSampler(range(10), num_replicas=3, rank=r,
  // shuffle=True, seed=5) after set_epoch(2), from python3-torch 1.13.
  CHECK(simsiam::shard_indices(10, 0, 3, 5, 2) == std::vector<int64_t>{5, 4, 9, 2});
  CHECK(simsiam::shard_indices(10, 1, 3, 5, 2) == std::vector<int64_t>{0, 1, 6, 5});
  CHECK(simsiam::shard_indices(10, 2, 3, 5, 2) == std::vector<int64_t>{3, 7, 8, 0});
  CHECK(simsiam::shard_indices(10, 1, 3, 5, 2, true, /*drop_tail=*/true) ==
        std::vector<int64_t>{0, 1, 6});
  CHECK(simsiam::shard_indices(10, 2, 3, 0, 0, /*shuffle=*/false) ==
        std::vector<int64_t>{2, 5, 8, 1});
  // Disjoint and complete without padding (n divisible), and reshuffled per epoch.
  std::set<int64_t> seen;
  for (int64_t rank = 0; rank < 4; ++rank) {
    for (auto i : simsiam::shard_indices(1000, rank, 4, 1, 3)) CHECK(seen.insert(i).second);
  }
  CHECK(seen.size() == 1000);
  CHECK(simsiam::shard_indices(1000, 0, 4, 1, 3) != simsiam::shard_indices(1000, 0, 4, 1, 4));
  CHECK_THROWS_WITH(simsiam::shard_indices(10, 3, 3, 0, 0),
                    Contains("expected 0 <= rank < world_size, got rank 3"));
}

TEST_CASE("the loader is deterministic for a seed whatever the worker count", "[data][loader]") {
  simsiam::LabeledImages data{torch::randint(0, 256, {50, 3, 16, 16}, torch::kUInt8),
                              torch::arange(50, torch::kLong)};
  using Source = simsiam::TensorSource<decltype(A::simsiam_cifar(16))>;
  const auto run = [&](int64_t workers, int64_t epoch) {
    simsiam::LoaderOptions options;
    options.batch_size(8);
    options.workers(workers);
    options.seed(3);
    simsiam::Loader<Source> loader(Source{data, A::simsiam_cifar(16)}, options);
    loader.set_epoch(epoch);
    std::vector<simsiam::TwoViewBatch> out;
    while (auto batch = loader.next()) out.push_back(*batch);
    CHECK(loader.stats().images == 48);
    CHECK(loader.stats().batches == 6);
    return out;
  };
  const auto serial = run(0, 1), threaded = run(3, 1), other_epoch = run(2, 2);
  REQUIRE(serial.size() == 6);  // 50 images, batch 8, drop_last: 6 batches
  REQUIRE(threaded.size() == 6);
  std::set<int64_t> seen;
  for (size_t b = 0; b < serial.size(); ++b) {
    CHECK(torch::equal(serial[b].view1, threaded[b].view1));
    CHECK(torch::equal(serial[b].view2, threaded[b].view2));
    CHECK(torch::equal(serial[b].labels, serial[b].indices));  // labels follow their images
    for (int64_t i = 0; i < 8; ++i) CHECK(seen.insert(serial[b].indices[i].item<int64_t>()).second);
  }
  CHECK_FALSE(torch::equal(serial[0].indices, other_epoch[0].indices));  // reshuffled
  CHECK(serial[0].view1.sizes() == torch::IntArrayRef({8, 3, 16, 16}));
}

TEST_CASE("the loader pins only for a CUDA training device that exists", "[data][loader][errors]") {
  simsiam::LabeledImages data{torch::zeros({4, 3, 8, 8}, torch::kUInt8),
                              torch::arange(4, torch::kLong)};
  using Source = simsiam::TensorSource<decltype(A::simsiam_cifar(8))>;
  const auto make = [&](torch::Device device) {
    return std::make_unique<simsiam::Loader<Source>>(
        Source{data, A::simsiam_cifar(8)},
        simsiam::LoaderOptions().batch_size(2).workers(0).device(device));
  };
  // A CPU device never pins, whatever LibTorch this is.
  CHECK_FALSE(make(torch::kCPU)->next()->view1.is_pinned());
  const auto gpus = static_cast<int64_t>(torch::cuda::device_count());
  CHECK_THROWS_WITH(make(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpus))),
                    Contains("expected one of the " + std::to_string(gpus) + " CUDA devices") &&
                        Contains("cuda:" + std::to_string(gpus)));
  if (gpus == 0) {
    CHECK_THROWS_WITH(make(torch::kCUDA), Contains("use torch::kCPU"));
  } else {
    CHECK(make(torch::Device(torch::kCUDA, 0))->next()->view1.is_pinned());
  }
}

TEST_CASE("bad images met by the loader are skipped, named and limited", "[data][loader][errors]") {
  const auto root = make_tree("loader_bad", /*with_bad=*/true);
  const auto [crop, post] = simsiam::augment::split_crop(A::simsiam_imagenet(24));
  using Source = simsiam::FolderSource<std::decay_t<decltype(post)>>;
  std::vector<std::string> reported;
  simsiam::LoaderOptions options;
  options.batch_size(9);
  options.workers(2);
  options.on_bad_image([&](const simsiam::BadImage& bad) {
    reported.push_back(fs::path(bad.name).filename().string() + ": " + bad.reason);
  });
  {
    simsiam::Loader<Source> loader(
        Source{simsiam::ImageFolder(root.string()), simsiam::DecodedViews{crop}, post}, options);
    const auto batch = loader.next();
    REQUIRE(batch);
    CHECK(batch->view1.sizes() == torch::IntArrayRef({7, 3, 24, 24}));  // 9 files, 2 skipped
    CHECK_FALSE(loader.next());
    CHECK(loader.stats().bad_images == 2);
    INFO(reported.front());
    INFO(reported.back());
    REQUIRE(reported.size() == 2);
    std::sort(reported.begin(), reported.end());
    CHECK_THAT(reported[0], Contains("truncated.jpg: ") && Contains("is truncated"));
    CHECK_THAT(reported[1], Contains("zero.jpg: ") && Contains("(it is empty)"));
  }
  options.max_bad_images(1);
  simsiam::Loader<Source> strict(
      Source{simsiam::ImageFolder(root.string()), simsiam::DecodedViews{crop}, post}, options);
  CHECK_THROWS_WITH(strict.next(), Contains("more than max_bad_images = 1"));
  // A file that disappears (or becomes unreadable) after the scan is skipped the same way.
  fs::remove(root / "dog" / "truncated.jpg");
  fs::remove(root / "emu" / "zero.jpg");
  options.batch_size(7);
  options.workers(0);  // batches built in next(), after the file below is gone
  simsiam::Loader<Source> gone(
      Source{simsiam::ImageFolder(root.string()), simsiam::DecodedViews{crop}, post}, options);
  fs::remove(root / "cat" / "b.jpg");
  reported.clear();
  const auto batch = gone.next();
  REQUIRE(batch);
  CHECK(batch->view1.size(0) == 6);
  REQUIRE(reported.size() == 1);
  CHECK_THAT(reported[0], Contains("b.jpg: ") && Contains("no such file"));
  if (geteuid() != 0) {  // root reads files whatever their permissions
    fs::permissions(root / "dog" / "d.jpeg", fs::perms::none);
    reported.clear();
    gone.set_epoch(1);
    CHECK(gone.next());
    CHECK(reported.size() >= 1);
  }
  fs::remove_all(root);
}
