// Quick start: SimSiam pretraining on the real Fashion-MNIST, on a laptop CPU.
//
// Pretrains a small ConvNet with SimSiam (two augmented views, projector, predictor,
// stop-gradient symmetric loss, SGD with cosine decay and a fixed predictor lr as in the official
// recipe), prints per epoch the loss and the std of l2-normalised z (the collapse monitor), and
// at the end the weighted kNN top-1 (k=200, t=0.1) of backbone features on the 10k test set, next
// to the same network at its random initialisation.
//
//   fashion_mnist [--epochs N] [--batch-size B] [--threads T] [--data DIR] [--help]
#include <CLI/CLI.hpp>
#include <simsiam/augment/presets.hpp>
#include <simsiam/data/idx.hpp>
#include <simsiam/simsiam.hpp>
#include <simsiam/train/allocator.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace {

struct Config {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  int64_t batch_size = 256;
  // lr = base_lr * batch / 256 (official scaling). The paper's bases are 0.05 (ImageNet) and 0.03
  // (CIFAR) for hundreds of epochs; for this small network and 5 epochs 0.15 learns fastest
  // (kNN gain +2.3 points at 0.06, +3.8 at 0.15, +3.5 at 0.3; docs/performance.md).
  double base_lr = 0.15;
  double weight_decay = 5e-4;
  int threads = 2;
  int64_t dim = 512;
  int64_t pred_dim = 128;
  uint64_t seed = 0;
  int64_t knn_k = 200;
  double knn_t = 0.1;
  int64_t train_subset = 0;  // 0: all 60,000 images
};

constexpr double kPi = 3.14159265358979323846;

torch::Tensor to_unit(const torch::Tensor& images_u8) {
  return images_u8.to(torch::kFloat).div(255);
}

/// Backbone features of all images, in eval mode, in batches.
torch::Tensor extract_features(simsiam::ConvNet& backbone, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  backbone->eval();
  std::vector<torch::Tensor> chunks;
  for (int64_t start = 0; start < images.size(0); start += 1024) {
    const auto batch = to_unit(images.slice(0, start, start + 1024));
    chunks.push_back(backbone->forward(simsiam::augment::functional::normalize(
        batch, simsiam::augment::kFashionMnistMean, simsiam::augment::kFashionMnistStd)));
  }
  backbone->train();
  return torch::cat(chunks);
}

double knn_top1(simsiam::ConvNet& backbone, const simsiam::LabeledImages& train,
                const simsiam::LabeledImages& test, const Config& config) {
  const auto bank = extract_features(backbone, train.images);
  const auto queries = extract_features(backbone, test.images);
  return simsiam::knn_accuracy(queries, test.labels, bank, train.labels, 10,
                               simsiam::KnnOptions().k(config.knn_k).temperature(config.knn_t));
}

int run(const Config& config) {
  simsiam::keep_freed_memory();  // reuse activations' memory instead of page-faulting it back
  torch::set_num_threads(config.threads);
  torch::manual_seed(config.seed);
  simsiam::LabeledImages train, test;
  try {
    train = simsiam::read_mnist(config.data, /*train=*/true);
    test = simsiam::read_mnist(config.data, /*train=*/false);
  } catch (const c10::Error& e) {
    std::cerr << "fashion_mnist: no readable Fashion-MNIST in '" << config.data
              << "': install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
                 " or pass --data DIR ("
              << e.what_without_backtrace() << ")\n";
    return 1;
  }
  auto images = train.images;
  if (config.train_subset > 0) images = images.slice(0, 0, config.train_subset);
  const int64_t n = images.size(0);
  const int64_t steps_per_epoch = n / config.batch_size;  // drop_last, as the official loader
  if (steps_per_epoch == 0) {
    std::cerr << "fashion_mnist: --batch-size " << config.batch_size << " exceeds the " << n
              << " training images\n";
    return 1;
  }

  simsiam::ConvNet backbone(simsiam::ConvNetOptions(1).widths({32, 64, 128, 256}));
  simsiam::SimSiam<simsiam::ConvNet> model(
      backbone,
      simsiam::SimSiamOptions().dim(config.dim).pred_dim(config.pred_dim).projector_layers(2));
  const double random_knn = knn_top1(backbone, train, test, config);
  std::printf("kNN top-1 at random init: %.2f%%\n", 100 * random_knn);

  const double lr = config.base_lr * static_cast<double>(config.batch_size) / 256.0;
  auto options = [&] {
    return torch::optim::SGDOptions(lr).momentum(0.9).weight_decay(config.weight_decay);
  };
  torch::optim::SGD sgd(
      {torch::optim::OptimizerParamGroup(model->encoder_parameters(),
                                         std::make_unique<torch::optim::SGDOptions>(options())),
       torch::optim::OptimizerParamGroup(model->predictor_parameters(),
                                         std::make_unique<torch::optim::SGDOptions>(options()))},
      options());
  simsiam::SymmetricLoss<> criterion;
  auto gen = at::detail::createCPUGenerator(config.seed);
  // RandomResizedCrop(28, scale 0.2-1), brightness/contrast jitter 0.4 with p = 0.8, flip,
  // normalisation: the paper's recipe without the colour operations grayscale images lack.
  const simsiam::augment::TwoViews views(simsiam::augment::simsiam_grayscale(28));

  std::printf("SimSiam on Fashion-MNIST: %lld images, batch %lld, %d epochs, lr %.4f, %d threads\n",
              static_cast<long long>(n), static_cast<long long>(config.batch_size), config.epochs,
              lr, config.threads);
  const auto start = std::chrono::steady_clock::now();
  for (int epoch = 0; epoch < config.epochs; ++epoch) {
    // Cosine decay per epoch for the encoder; the predictor keeps the initial lr (--fix-pred-lr).
    const double epoch_lr = lr * 0.5 * (1.0 + std::cos(kPi * epoch / config.epochs));
    static_cast<torch::optim::SGDOptions&>(sgd.param_groups()[0].options()).lr(epoch_lr);
    const auto epoch_start = std::chrono::steady_clock::now();
    const auto order = torch::randperm(n, gen, torch::kLong);
    double loss_sum = 0, std_sum = 0;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      const auto batch = to_unit(images.index_select(
          0, order.slice(0, step * config.batch_size, (step + 1) * config.batch_size)));
      const auto [x1, x2] = views(batch, gen);
      const auto out = model->forward(x1, x2);
      auto loss = criterion(out.p1, out.p2, out.z1, out.z2);
      TORCH_CHECK(std::isfinite(loss.item<double>()), "loss became ", loss.item<double>(),
                  " at epoch ", epoch, " step ", step, "; lower --lr");
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      loss_sum += loss.item<double>();
      std_sum += simsiam::functional::collapse_std(out.z1).item<double>();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    std::printf("epoch %d/%d  loss %.4f  z-std %.4f (1/sqrt(d) = %.4f)  lr %.4f  %.0f img/s\n",
                epoch + 1, config.epochs, loss_sum / steps_per_epoch, std_sum / steps_per_epoch,
                1.0 / std::sqrt(static_cast<double>(config.dim)), epoch_lr,
                steps_per_epoch * config.batch_size / seconds);
    std::fflush(stdout);
  }
  const double trained_knn = knn_top1(backbone, train, test, config);
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
  std::printf(
      "kNN top-1 (k=%lld, t=%.2f) on the 10k test set: %.2f%% after SimSiam vs %.2f%% at "
      "random init (%+.2f points), training took %.1f min\n",
      static_cast<long long>(config.knn_k), config.knn_t, 100 * trained_knn, 100 * random_knn,
      100 * (trained_knn - random_knn), minutes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"SimSiam quick start: self-supervised pretraining on Fashion-MNIST (CPU)"};
  app.add_option("--data", config.data, "Directory with the Fashion-MNIST IDX files")
      ->capture_default_str();
  app.add_option("--epochs", config.epochs, "Pretraining epochs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", config.batch_size, "Images per batch (two views each)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{60000}));
  app.add_option("--lr", config.base_lr, "Base learning rate, scaled by batch/256")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--wd", config.weight_decay, "Weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", config.threads, "CPU threads for LibTorch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dim", config.dim, "Projector output dimension")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--pred-dim", config.pred_dim, "Predictor hidden dimension")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", config.seed, "Random seed")->capture_default_str();
  app.add_option("--knn-k", config.knn_k, "Neighbours for the kNN monitor")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--knn-t", config.knn_t, "Temperature of the kNN monitor")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--train-subset", config.train_subset, "Pretrain on the first N images (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    return run(config);
  } catch (const c10::Error& e) {
    std::cerr << "fashion_mnist: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: " << e.what() << "\n";
  }
  return 1;
}
