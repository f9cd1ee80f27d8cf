#!/usr/bin/python3
"""Small models of every input rank gopruner takes, for its rank tests.

Usage: /usr/bin/python3 scripts/rank_models.py OUTDIR

Writes OUTDIR/NAME_{scripted,traced}.pt for
  mlp     [N,F]          Linear/BatchNorm1d/ReLU head (input 4,20)
  signal  [N,C,L]        Conv1d, BatchNorm1d, PReLU, MaxPool1d, GroupNorm,
                         AvgPool1d, InstanceNorm1d, ConvTranspose1d, Upsample,
                         AdaptiveAvgPool1d, Linear (input 1,2,256)
  video   [N,C,D,H,W]    r3d_18-style: Conv3d stem, BatchNorm3d, MaxPool3d, a
                         residual block, InstanceNorm3d, AvgPool3d,
                         AdaptiveAvgPool3d, Linear (input 1,3,4,32,32)
  decoder [N,C,H,W]      ConvTranspose2d decoder with InstanceNorm2d and a
                         bilinear Upsample (input 1,3,32,32)
  decoder3d [N,C,D,H,W]  ConvTranspose3d with GroupNorm (input 1,1,8,8,8)
and OUTDIR/models.json: {NAME: {"input_shape", "macs", "params"}} with the
MACs of scripts/flopcount.py (ptflops' formulas) on the eager module.
Random weights with fixed seeds and randomised norm statistics and affine
parameters, so that equivalence tests are meaningful.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import flopcount  # noqa: E402


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        # The non-affine norm reads the input features, which stay: behind
        # a pruned layer it would feed the next layer -mean/sqrt(var) for a
        # removed feature, which pruning drops but zeroing the layer's rows
        # (the equivalence tests' reference) keeps.
        self.net = nn.Sequential(nn.BatchNorm1d(20, affine=False),
                                 nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                 nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(),
                                 nn.Linear(48, 3))

    def forward(self, x):
        return self.net(x)


class Signal(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 16, 7, padding=3)
        self.b1 = nn.BatchNorm1d(16)
        self.a1 = nn.PReLU(16)
        self.p1 = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(16, 32, 5, padding=2, bias=False)
        self.g2 = nn.GroupNorm(4, 32)
        self.a2 = nn.PReLU()
        self.p2 = nn.AvgPool1d(2)
        self.c3 = nn.Conv1d(32, 32, 3, padding=1)
        self.i3 = nn.InstanceNorm1d(32)
        self.up = nn.ConvTranspose1d(32, 24, 4, stride=2, padding=1)
        self.b4 = nn.BatchNorm1d(24)
        self.us = nn.Upsample(scale_factor=2, mode="nearest")
        self.c5 = nn.Conv1d(24, 16, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(16, 5)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.p1(self.a1(self.b1(self.c1(x))))
        x = self.p2(self.a2(self.g2(self.c2(x))))
        x = self.relu(self.i3(self.c3(x)))
        x = self.relu(self.b4(self.up(x)))
        x = self.relu(self.c5(self.us(x)))
        return self.fc(self.gap(x).flatten(1))


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 16, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                  nn.BatchNorm3d(16), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool3d(2)
        self.c1 = nn.Conv3d(16, 16, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm3d(16)
        self.c2 = nn.Conv3d(16, 16, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm3d(16)
        self.down = nn.Conv3d(16, 32, 1, stride=2)
        self.inorm = nn.InstanceNorm3d(32, affine=True)
        self.avg = nn.AvgPool3d((1, 2, 2))
        self.gap = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(32, 10)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.pool(self.stem(x))
        y = self.relu(self.b1(self.c1(x)))
        x = self.relu(x + self.b2(self.c2(y)))
        x = self.avg(self.relu(self.inorm(self.down(x))))
        return self.fc(self.gap(x).flatten(1))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.b0 = nn.BatchNorm2d(32)
        self.d1 = nn.ConvTranspose2d(32, 24, 4, stride=2, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(24)
        self.d2 = nn.ConvTranspose2d(24, 16, 3, stride=2, padding=1, output_padding=1)
        self.i2 = nn.InstanceNorm2d(16, affine=True)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.head = nn.Conv2d(16, 2, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.b0(self.enc(x)))
        x = self.relu(self.b1(self.d1(x)))
        x = self.relu(self.i2(self.d2(x)))
        return self.head(self.up(x))


class Decoder3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv3d(1, 8, 3, stride=2, padding=1)
        self.d1 = nn.ConvTranspose3d(8, 12, 2, stride=2)
        self.g1 = nn.GroupNorm(3, 12)
        self.head = nn.Conv3d(12, 1, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.enc(x))
        x = self.relu(self.g1(self.d1(x)))
        return self.head(x)


MODELS = {
    "mlp": (MLP, [4, 20]),
    "signal": (Signal, [1, 2, 256]),
    "video": (Video, [1, 3, 4, 32, 32]),
    "decoder": (Decoder, [1, 3, 32, 32]),
    "decoder3d": (Decoder3d, [1, 1, 8, 8, 8]),
}


def randomise(m):
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
        if getattr(mod, "affine", False) and getattr(mod, "weight", None) is not None:
            mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
            mod.bias.copy_(torch.rand(mod.bias.shape, generator=g) * 0.4 - 0.2)


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: rank_models.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    meta = {}
    for i, (name, (cls, shape)) in enumerate(MODELS.items()):
        torch.manual_seed(i)
        m = cls().eval()
        with torch.no_grad():
            randomise(m)
        x = torch.randn(*shape)
        r = flopcount.count(m, (x,))
        meta[name] = {"input_shape": shape, "macs": r["macs"], "params": r["params"]}
        torch.jit.script(m).save(os.path.join(out, name + "_scripted.pt"))
        with torch.no_grad():
            torch.jit.trace(m, x).save(os.path.join(out, name + "_traced.pt"))
    with open(os.path.join(out, "models.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
