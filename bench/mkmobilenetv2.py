#!/usr/bin/python3
"""Write a scripted MobileNetV2 (Sandler et al. 2018; torchvision's
mobilenet_v2; NetAdapt's paper searched its predecessor, MobileNet v1) for 1x28x28 input,
random weights (fixed seed), for benchmark 9 (search quality). Scaled to the
input: half the width (width_mult 0.5, the last 1x1 conv at 640 channels),
a one-channel first conv of stride 1, and strides 1-2-2-2-1-1-1 over the
seven inverted-residual stages, so 28 px leave 4x4 at the end. Benchmark 9
trains it to convergence with `gopruner train` before pruning. Downloads
nothing.

Usage: /usr/bin/python3 bench/mkmobilenetv2.py OUT.pt
"""
import sys

import torch.nn as nn
from torchvision.models import mobilenet_v2

import scripted

# t (expansion), c (channels at width 1), n (blocks), s (first stride)
SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 1], [6, 320, 1, 1]]


def make():
    m = mobilenet_v2(num_classes=10, width_mult=0.5, inverted_residual_setting=SETTING)
    first = m.features[0][0]
    m.features[0][0] = nn.Conv2d(1, first.out_channels, 3, 1, 1, bias=False)
    last = m.features[-1][0]
    m.features[-1][0] = nn.Conv2d(last.in_channels, 640, 1, bias=False)
    m.features[-1][1] = nn.BatchNorm2d(640)
    m.classifier[1] = nn.Linear(640, 10)
    nn.init.kaiming_normal_(m.features[0][0].weight, mode="fan_out")
    nn.init.kaiming_normal_(m.features[-1][0].weight, mode="fan_out")
    nn.init.normal_(m.classifier[1].weight, 0, 0.01)
    nn.init.zeros_(m.classifier[1].bias)
    return m


if __name__ == "__main__":
    sys.exit(scripted.save(make, 0))
