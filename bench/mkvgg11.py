#!/usr/bin/python3
"""Write a scripted VGG-11 with BatchNorm (Simonyan & Zisserman 2015,
configuration A) for 1x28x28 input, random weights (fixed seed), for
benchmark 9 (search quality). Scaled to the input: a quarter of the width
(16-M-32-M-64-64-M-128-128-M-128-128, 8 convs, each its own channel group),
four poolings instead of five (28 px leave 1 after four) and global average
pooling into one linear layer instead of the three 4096-wide ones; 6.4 M
MACs. Benchmark 9 trains it to convergence with `gopruner train` before
pruning. Downloads nothing.

Usage: /usr/bin/python3 bench/mkvgg11.py OUT.pt
"""
import sys

import torch
import torch.nn as nn

import scripted

CFG = [16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128]


class VGG11(nn.Module):
    def __init__(self, in_ch: int = 1, num_classes: int = 10):
        super().__init__()
        layers = []
        c = in_ch
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


if __name__ == "__main__":
    sys.exit(scripted.save(VGG11, 0))
