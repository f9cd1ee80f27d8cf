#!/usr/bin/python3
"""Write a scripted MNASNet (Tan et al. 2019; torchvision's mnasnet0_5, the
architecture a platform-aware search found for mobile latency) for 1x28x28
input, random weights (fixed seed), for benchmark 9 (search quality). Scaled
to the input as bench/mkmobilenetv2.py scales MobileNetV2: alpha 0.5, a
one-channel first conv of stride 1 (28 px leave 2x2 after the four strided
stages), the last 1x1 conv at 640 channels. torchvision's BatchNorm momentum
(0.0003, TensorFlow's) is put back to PyTorch's 0.1, since benchmark 9 trains
it for 20 epochs only, with `gopruner train`, before pruning. Downloads
nothing.

Usage: /usr/bin/python3 bench/mkmnasnet.py OUT.pt
"""
import sys

import torch.nn as nn
from torchvision.models import mnasnet0_5

import scripted


def make():
    m = mnasnet0_5(num_classes=10)
    first = m.layers[0]
    m.layers[0] = nn.Conv2d(1, first.out_channels, 3, 1, 1, bias=False)
    last = m.layers[14]
    m.layers[14] = nn.Conv2d(last.in_channels, 640, 1, bias=False)
    m.layers[15] = nn.BatchNorm2d(640)
    m.classifier[1] = nn.Linear(640, 10)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = 0.1
    nn.init.kaiming_normal_(m.layers[0].weight, mode="fan_out", nonlinearity="relu")
    nn.init.kaiming_normal_(m.layers[14].weight, mode="fan_out", nonlinearity="relu")
    nn.init.kaiming_uniform_(m.classifier[1].weight, mode="fan_out", nonlinearity="sigmoid")
    nn.init.zeros_(m.classifier[1].bias)
    return m


if __name__ == "__main__":
    sys.exit(scripted.save(make, 0))
