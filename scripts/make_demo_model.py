#!/usr/bin/python3
"""Build gopruner's committed demo model (internal/demo/democnn.pt).

Usage: /usr/bin/python3 scripts/make_demo_model.py [OUT.pt]
       (default OUT = internal/demo/democnn.pt next to this scripts/ directory)

A small residual CNN for MNIST-sized input 1x1x28x28, default PyTorch init
(seed 0), eval mode, torch.jit.script. Prints its MACs and params counted with
scripts/flopcount.py (ptflops formulas). The output is byte-identical from run
to run (PYTHONHASHSEED is pinned).

  conv1 1->16 3x3, bn1, relu                       28x28
  layer1: block 16->16 (conv-bn-relu-conv-bn + identity, relu)
  layer2: block 16->32 stride 2, shortcut 1x1 conv-bn    14x14
  layer3: block 32->64 stride 2, shortcut 1x1 conv-bn     7x7
  avgpool (adaptive 1x1), flatten, fc 64->10
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, HERE)
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "pruning", "demo", "democnn.pt")

if os.environ.get("PYTHONHASHSEED") != "0":  # TorchScript writes some constants in set order
    os.execve(sys.executable, [sys.executable] + sys.argv,
              dict(os.environ, PYTHONHASHSEED="0"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import flopcount  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))
        else:
            self.downsample = None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class DemoCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = Block(16, 16)
        self.layer2 = Block(16, 32, stride=2)
        self.layer3 = Block(32, 64, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = DemoCNN().eval()
    x = torch.zeros(1, 1, 28, 28)
    cnt = flopcount.count(model, (x,))
    sm = torch.jit.script(model)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # Save under the final basename (TorchScript names the archive's top folder after
    # it), in a temporary directory next to OUT, then rename into place atomically.
    tmpdir = tempfile.mkdtemp(prefix=".democnn-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        tmp = os.path.join(tmpdir, os.path.basename(out))
        torch.jit.save(sm, tmp)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    with torch.no_grad():
        y = torch.jit.load(out)(x)
    print(f"{out}: {os.path.getsize(out)} bytes, input 1x1x28x28, output {list(y.shape)}, "
          f"MACs {cnt['macs']:,}, params {cnt['params']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
