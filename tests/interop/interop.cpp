// SPDX-License-Identifier: BSD-3-Clause
// The C++ side of tests/interop/run_interop.sh (DIR written by make_official_checkpoint.py):
// an official SimSiam checkpoint and a torchvision backbone load into the library's models and
// give PyTorch's outputs within 1e-5; bad files are refused by name; then the backbone is
// written for check_cpp_backbone.py. Prints one line per check; exits 1 on the first failure.
#include <simsiam/backbones/resnet.hpp>
#include <simsiam/model/pytorch_interop.hpp>
#include <simsiam/model/simsiam.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  failures += ok ? 0 : 1;
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

/// The error message of `fn`, or "" when it does not throw.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

simsiam::ResNet resnet10() {
  return simsiam::ResNet(simsiam::ResNetOptions(simsiam::ResNetBlock::kBasic, {1, 1, 1, 1}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: interop DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const auto expected = simsiam::detail::read_torch_save(dir + "/expected.pt").toGenericDict();
  const auto get = [&](const char* key) {
    return expected.at(c10::IValue(std::string(key))).toTensor();
  };
  const auto x = get("x");

  // Python -> C++: the official checkpoint.
  simsiam::SimSiam<simsiam::ResNet> model(resnet10(),
                                          simsiam::SimSiamOptions().dim(32).pred_dim(8));
  const auto info = simsiam::load_official_checkpoint(dir + "/checkpoint_0002.pth.tar", *model);
  const auto expected_tensors = model->named_parameters().size() + model->named_buffers().size();
  check(info.epoch == 2 && info.arch == "resnet10" &&
            info.tensors == static_cast<int64_t>(expected_tensors),
        "checkpoint_0002.pth.tar: epoch " + std::to_string(info.epoch) + ", arch '" + info.arch +
            "', " + std::to_string(info.tensors) + " tensors of " +
            std::to_string(expected_tensors));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto z = model->encode(x);
  const auto p = model->predictor()->forward(z);
  const auto features = model->features(x);
  const double dz = max_difference(z, get("z")), dp = max_difference(p, get("p")),
               df = max_difference(features, get("features"));
  check(dz <= 1e-5 && dp <= 1e-5 && df <= 1e-5,
        "official checkpoint in C++: max |difference| z " + std::to_string(dz) + ", p " +
            std::to_string(dp) + ", features " + std::to_string(df));

  // Python -> C++: a torchvision backbone state dict (fc ignored).
  auto backbone = resnet10();
  simsiam::load_torchvision_backbone(*backbone, dir + "/backbone_py.pth");
  backbone->eval();
  const double db = max_difference(backbone->forward(x), get("backbone_features"));
  check(db <= 1e-5, "torchvision state dict in C++: max |difference| " + std::to_string(db));

  // main_lincls.py's way: the official checkpoint's encoder (module.encoder.*, fc dropped)
  // straight into a backbone.
  auto from_official = resnet10();
  simsiam::load_torchvision_backbone(*from_official, dir + "/checkpoint_0002.pth.tar");
  from_official->eval();
  const double dl = max_difference(from_official->forward(x), get("features"));
  check(dl <= 1e-5,
        "official checkpoint as a backbone (main_lincls.py's loading): max "
        "|difference| " +
            std::to_string(dl));

  // Refusals, by name.
  const auto mismatch = error_of([&] {
    simsiam::SimSiam<simsiam::ResNet> wrong(resnet10(),
                                            simsiam::SimSiamOptions().dim(64).pred_dim(8));
    simsiam::load_official_checkpoint(dir + "/checkpoint_0002.pth.tar", *wrong);
  });
  check(mismatch.find("gives 'projector.6.weight' the shape [32, 512], the model expects "
                      "[64, 512]") != std::string::npos,
        "another dim is refused: " + mismatch);
  const auto foreign =
      error_of([&] { simsiam::load_official_checkpoint(dir + "/backbone_py.pth", *model); });
  check(foreign.find("is not an official SimSiam checkpoint: expected state_dict keys "
                     "'module.encoder.*'") != std::string::npos,
        "a torchvision state dict is not an official checkpoint: " + foreign);
  const auto deeper = error_of([&] {
    auto resnet18 = simsiam::resnet18();
    simsiam::load_torchvision_backbone(*resnet18, dir + "/backbone_py.pth");
  });
  check(deeper.find("lacks") != std::string::npos && deeper.find("layer1.1.") != std::string::npos,
        "a deeper network is refused: " + deeper);
  const auto truncated_path = dir + "/truncated.pth.tar";
  {
    std::ifstream in(dir + "/checkpoint_0002.pth.tar", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated_path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  const auto truncated =
      error_of([&] { simsiam::load_official_checkpoint(truncated_path, *model); });
  check(truncated.find("truncated.pth.tar") != std::string::npos,
        "a truncated file is refused: " + truncated);
  const auto missing =
      error_of([&] { simsiam::load_official_checkpoint(dir + "/none.pth.tar", *model); });
  check(missing.find("no such file") != std::string::npos, "a missing file: " + missing);

  // C++ -> Python: the loaded backbone, in torchvision's format, with its features.
  simsiam::save_torchvision_backbone(*model->backbone(), dir + "/backbone_cpp.pt");
  c10::Dict<std::string, torch::Tensor> outputs;
  outputs.insert("x", x);
  outputs.insert("features", features);
  const auto bytes = torch::pickle_save(c10::IValue(outputs));
  std::ofstream(dir + "/cpp_features.pt", std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  check(std::filesystem::exists(dir + "/backbone_cpp.pt"), "backbone_cpp.pt written");
  return failures == 0 ? 0 : 1;
}
