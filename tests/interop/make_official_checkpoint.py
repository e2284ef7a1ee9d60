#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes, in DIR, what the official facebookresearch/simsiam code would write, for the C++
interoperability test (tests/interop/run_interop.sh):

  checkpoint_0002.pth.tar  main_simsiam.py's save_checkpoint: {'epoch', 'arch', 'state_dict' of the
                           DistributedDataParallel-wrapped model ('module.encoder.*',
                           'module.predictor.*'), 'optimizer'} after two SGD steps
  backbone_py.pth          a torchvision ResNet's state dict (fc included)
  expected.pt              inputs and the eval-mode outputs of both: encoder z, predictor p,
                           backbone features

The model is builder.py's SimSiam around torchvision's ResNet with BasicBlocks [1, 1, 1, 1]
(ResNet-18's layout with one block per stage: the same names, small enough to write quickly),
dim 32, pred_dim 8. Usage: make_official_checkpoint.py DIR
"""
import sys

import torch
import torch.nn as nn
import torchvision


class SimSiam(nn.Module):
    """facebookresearch/simsiam simsiam/builder.py, verbatim in structure."""

    def __init__(self, base_encoder, dim=2048, pred_dim=512):
        super().__init__()
        self.encoder = base_encoder(num_classes=dim, zero_init_residual=True)
        prev_dim = self.encoder.fc.weight.shape[1]
        self.encoder.fc = nn.Sequential(nn.Linear(prev_dim, prev_dim, bias=False),
                                        nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
                                        nn.Linear(prev_dim, prev_dim, bias=False),
                                        nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
                                        self.encoder.fc,
                                        nn.BatchNorm1d(dim, affine=False))
        self.encoder.fc[6].bias.requires_grad = False
        self.predictor = nn.Sequential(nn.Linear(dim, pred_dim, bias=False),
                                       nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
                                       nn.Linear(pred_dim, dim))



def resnet10(**kwargs):
    return torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1],
                                            **kwargs)


class Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: its state dict keys start with 'module.'."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def main(out):
    torch.manual_seed(0)
    model = SimSiam(resnet10, dim=32, pred_dim=8)
    criterion = nn.CosineSimilarity(dim=1)
    optimizer = torch.optim.SGD([{'params': model.encoder.parameters(), 'fix_lr': False},
                                 {'params': model.predictor.parameters(), 'fix_lr': True}],
                                0.05, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):  # two steps: non-trivial weights, BN statistics and momentum buffers
        x1, x2 = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
        z1, z2 = model.encoder(x1), model.encoder(x2)  # builder.py's forward, then the loss
        p1, p2 = model.predictor(z1), model.predictor(z2)
        loss = -(criterion(p1, z2.detach()).mean() + criterion(p2, z1.detach()).mean()) * 0.5
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save({'epoch': 2, 'arch': 'resnet10', 'state_dict': Wrapped(model).state_dict(),
                'optimizer': optimizer.state_dict()}, f"{out}/checkpoint_0002.pth.tar")

    backbone = resnet10()
    with torch.no_grad():
        for p in backbone.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
        for name, b in backbone.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
    torch.save(backbone.state_dict(), f"{out}/backbone_py.pth")

    model.eval()
    backbone.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        z = model.encoder(x)
        p = model.predictor(z)
        fc, model.encoder.fc = model.encoder.fc, nn.Identity()
        features = model.encoder(x)
        model.encoder.fc = fc
        backbone.fc = nn.Identity()
        backbone_features = backbone(x)
    torch.save({'x': x, 'z': z, 'p': p, 'features': features,
                'backbone_features': backbone_features}, f"{out}/expected.pt")


if __name__ == "__main__":
    main(sys.argv[1])
