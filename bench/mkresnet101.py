#!/usr/bin/python3
"""Write a scripted torchvision resnet101 with random weights (fixed seed) for
benchmark 6 (scaling of cost). Downloads nothing.

Usage: /usr/bin/python3 bench/mkresnet101.py OUT.pt
"""
import sys

import torchvision

import scripted


def resnet101():
    try:
        return torchvision.models.resnet101(weights=None)
    except TypeError:  # torchvision < 0.13
        return torchvision.models.resnet101(pretrained=False)


if __name__ == "__main__":
    sys.exit(scripted.save(resnet101, 101))
