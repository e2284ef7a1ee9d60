// Uses the installed headers the way a user would: one SimSiam step and one IDX read.
#include <simsiam/data/idx.hpp>
#include <simsiam/simsiam.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

int main() {
  if (std::strcmp(simsiam::kVersion, EXPECTED_VERSION) != 0) {
    std::fprintf(stderr, "version mismatch: header %s, package %s\n", simsiam::kVersion,
                 EXPECTED_VERSION);
    return 1;
  }
  simsiam::SimSiam<simsiam::ConvNet> model(simsiam::ConvNet(simsiam::ConvNetOptions(1).widths({8})),
                                           simsiam::SimSiamOptions().dim(16).pred_dim(4));
  simsiam::SymmetricLoss<> criterion;
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto out = model->forward(torch::rand({8, 1, 12, 12}), torch::rand({8, 1, 12, 12}));
  auto loss = criterion(out.p1, out.p2, out.z1, out.z2);
  loss.backward();
  sgd.step();

  const auto path = std::filesystem::temp_directory_path() / "simsiam_consumer.idx";
  std::ofstream(path, std::ios::binary).write("\0\0\x08\x01\0\0\0\x02\x07\x09", 10);
  const auto values = simsiam::read_idx(path.string());
  std::filesystem::remove(path);
  const bool ok = values.numel() == 2 && values[1].item<int>() == 9 && loss.item<float>() <= 1.0f;
  std::printf("consumer: SimSiam %s, loss %.4f, idx %s\n", simsiam::kVersion, loss.item<float>(),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
