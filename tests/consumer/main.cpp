// SPDX-License-Identifier: BSD-3-Clause
// Uses the installed headers the way a user would: the README's loop on a small model, then an
// IDX read through the data component.
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/idx.hpp>
#include <simsiam/data/image.hpp>
#include <simsiam/distributed/process_group.hpp>
#include <simsiam/simsiam.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

static_assert(SIMSIAM_VERSION == EXPECTED_VERSION_NUMBER,
              "SIMSIAM_VERSION disagrees with the package version");

int main() {
  if (std::strcmp(simsiam::kVersion, EXPECTED_VERSION) != 0) {
    std::fprintf(stderr, "version mismatch: header %s, package %s\n", simsiam::kVersion,
                 EXPECTED_VERSION);
    return 1;
  }
  // The README's usage example, with a small backbone instead of ResNet-50.
  simsiam::SimSiam<simsiam::ConvNet> model(simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({8})),
                                           simsiam::SimSiamOptions().dim(16).pred_dim(4));
  simsiam::SymmetricLoss<> criterion;
  const int64_t batch_size = 8;
  const double lr = 0.05 * batch_size / 256;
  torch::optim::SGD optimizer({torch::optim::OptimizerParamGroup(model->encoder_parameters()),
                               torch::optim::OptimizerParamGroup(model->predictor_parameters())},
                              torch::optim::SGDOptions(lr).momentum(0.9).weight_decay(1e-4));
  const auto images = torch::randint(0, 256, {batch_size, 1, 12, 12}, torch::kUInt8);
  simsiam::augment::TwoViews views(simsiam::augment::simsiam_grayscale(12));
  torch::Tensor loss;
  for (int step = 0; step < 2; ++step) {
    auto [x1, x2] = views(images);
    auto out = model->forward(x1, x2);
    loss = criterion(out.p1, out.p2, out.z1, out.z2);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  const auto unit = images.to(torch::kFloat) / 255;
  const auto collapse = simsiam::functional::collapse_std(model->encode(unit)).item<double>();
  const auto representation = model->features(unit);

  const auto path = std::filesystem::temp_directory_path() / "simsiam_consumer.idx";
  std::ofstream(path, std::ios::binary).write("\0\0\x08\x01\0\0\0\x02\x07\x09", 10);
  const auto values = simsiam::read_idx(path.string());
  std::filesystem::remove(path);
  // JPEG and PNG through libjpeg-turbo and zlib, as the data component links them.
  const auto pixels = torch::full({3, 16, 16}, 200, torch::kUInt8);
  const auto jpeg = simsiam::decode_image(simsiam::encode_jpeg(pixels, 95));
  const auto png = simsiam::decode_image(simsiam::encode_png(pixels));
  const bool images_ok =
      torch::equal(png, pixels) && (jpeg.to(torch::kInt) - 200).abs().max().item<int>() <= 2;
  // The distributed component: a one-process Gloo group through a file store.
  const auto store = std::filesystem::temp_directory_path() / "simsiam_consumer_store";
  std::filesystem::remove(store);
  simsiam::distributed::ProcessGroup group(
      simsiam::distributed::DistributedOptions().file_store(store.string()));
  std::vector<torch::Tensor> sum{torch::full({3}, 2.0)};
  group.all_reduce_sum(sum);
  std::filesystem::remove(store);
  const bool distributed_ok =
      torch::equal(sum[0], torch::full({3}, 2.0)) && group.backend() == "gloo";
  const bool ok = images_ok && distributed_ok && values.numel() == 2 &&
                  values[1].item<int>() == 9 && loss.item<float>() <= 1.0f &&
                  representation.sizes() == torch::IntArrayRef({batch_size, 8}) && collapse > 0;
  std::printf("consumer: SimSiam %s, loss %.4f, z-std %.4f, idx and images %s\n", simsiam::kVersion,
              loss.item<float>(), collapse, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
