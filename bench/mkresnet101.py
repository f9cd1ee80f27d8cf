#!/usr/bin/python3
"""Write a scripted torchvision resnet101 with random weights (fixed seed) for
benchmark 6 (scaling of cost). Downloads nothing.

Usage: /usr/bin/python3 bench/mkresnet101.py OUT.pt
"""
import os
import sys

import torch
import torchvision


def main():
    out = sys.argv[1]
    torch.manual_seed(101)
    try:
        m = torchvision.models.resnet101(weights=None)
    except TypeError:  # torchvision < 0.13
        m = torchvision.models.resnet101(pretrained=False)
    m.eval()
    tmp = out + ".tmp"
    torch.jit.script(m).save(tmp)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
