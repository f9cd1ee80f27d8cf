"""Shared by the bench/mk*.py fixture writers."""
import os
import sys

import torch


def save(make, seed):
    """Seed torch, build make() in eval mode, script it and write it to
    sys.argv[1] atomically (a rename of a finished file)."""
    out = sys.argv[1]
    torch.manual_seed(seed)
    m = make().eval()
    tmp = out + ".tmp"
    torch.jit.script(m).save(tmp)
    os.replace(tmp, out)
    return 0
