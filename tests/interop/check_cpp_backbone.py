#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""The reverse direction of tests/interop/run_interop.sh: the backbone the C++ side wrote with
simsiam::save_torchvision_backbone loads into torchvision's ResNet (strict except fc) and gives
the C++ features within 1e-5. Usage: check_cpp_backbone.py DIR"""
import sys

import torch
import torch.nn as nn
import torchvision


def main(out):
    # weights_only: PyTorch's default since 2.6, which refuses anything but tensors and containers
    state = torch.load(f"{out}/backbone_cpp.pt", weights_only=True)
    net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    result = net.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"], result.missing_keys
    assert not result.unexpected_keys, result.unexpected_keys
    net.fc = nn.Identity()
    net.eval()
    # The test's own inputs and outputs, written with torch::pickle_save (tagged containers).
    cpp = torch.load(f"{out}/cpp_features.pt", weights_only=False)
    with torch.no_grad():
        features = net(cpp["x"])
    error = (features - cpp["features"]).abs().max().item()
    print(f"torchvision on the C++ backbone: max |difference| {error:.3g} over {features.numel()}"
          " features")
    assert error <= 1e-5, error


if __name__ == "__main__":
    main(sys.argv[1])
