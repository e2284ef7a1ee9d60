// SPDX-License-Identifier: BSD-3-Clause
// The smallest complete SimSiam run, the loop of the README on Fashion-MNIST, on a CPU.
//   minimal [DATA_DIR] [EPOCHS]   (default /usr/share/datasets/fashion-mnist, 2 epochs)
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/idx.hpp>
#include <simsiam/data/loader.hpp>
#include <simsiam/data/tensor_source.hpp>
#include <simsiam/simsiam.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  const std::string data = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int64_t epochs = argc > 2 ? std::stoll(argv[2]) : 2;
  torch::manual_seed(0);
  const auto train = simsiam::read_mnist(data, /*train=*/true);
  const auto test = simsiam::read_mnist(data, /*train=*/false);

  // Encoder f: a small ConvNet and the paper's 2-layer projector (its CIFAR variant); predictor h.
  simsiam::SimSiam<simsiam::ConvNet> model(
      simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({8, 16, 32, 64})),
      simsiam::SimSiamOptions().dim(512).pred_dim(128).projector_layers(2));

  // Two augmented views of every image, built by a worker thread; drop-last batches of 128.
  const auto augment = simsiam::augment::simsiam_grayscale(28);
  using Source = simsiam::TensorSource<decltype(augment)>;
  simsiam::Loader<Source> loader(Source{train, augment},
                                 simsiam::LoaderOptions().batch_size(128).workers(1));

  // SGD, momentum 0.9, lr = base x batch / 256 with cosine decay, the predictor's lr fixed.
  const auto recipe = simsiam::SgdRecipe().base_lr(0.3).batch_size(128).weight_decay(5e-4);
  auto sgd = simsiam::make_sgd(model, recipe);
  auto schedule = simsiam::make_cosine_schedule(sgd, recipe, epochs);
  simsiam::Trainer trainer(model, loader, sgd, &schedule, simsiam::TrainerOptions().epochs(epochs));

  // After each epoch: weighted kNN (k = 200, t = 0.1) of backbone features on the test set.
  const auto to_input = [](const torch::Tensor& images) {
    return simsiam::augment::functional::normalize(images.to(torch::kFloat).div(255),
                                                   simsiam::augment::kFashionMnistMean,
                                                   simsiam::augment::kFashionMnistStd);
  };
  trainer.add_hook(std::make_shared<simsiam::KnnMonitor>(
      train.images, train.labels, test.images, test.labels, /*classes=*/10,
      simsiam::KnnMonitorOptions().transform(to_input)));
  const auto result = trainer.fit();
  std::printf("kNN top-1 after %lld epochs: %.2f%%\n",
              static_cast<long long>(result.epochs_completed),
              100 * result.last_epoch.at(simsiam::metrics::kKnnTop1));
}
