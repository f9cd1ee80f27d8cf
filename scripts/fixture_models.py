"""Hand-made nn.Modules for the gopruner fixtures (see make_fixtures.py).

Module-level so that torch.save(eager module) can pickle them.
"""
from typing import List, Tuple

import torch
import torch.nn as nn


def cbr(cin, cout, k=3, stride=1, act=None):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
            act if act is not None else nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)  # with bias
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
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


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(c // r, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return x * s


class SE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=True)
        self.se = SqueezeExcite(16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.se(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch_a = nn.Sequential(*cbr(3, 8, 3))
        self.branch_b = nn.Sequential(*cbr(3, 12, 5))
        self.conv3 = nn.Sequential(*cbr(20, 16, 3, stride=2))
        self.conv4 = nn.Sequential(*cbr(16, 8, 3))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        x = self.conv3(x)
        x = torch.cat([x, self.conv4(x)], 1)  # densenet-like
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, c, expand):
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(
            *cbr(c, h, 1, act=nn.ReLU6(inplace=True)),
            nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h),
            nn.ReLU6(inplace=True),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 16, 3, stride=2, act=nn.ReLU6(inplace=True)))
        self.block = InvertedResidual(16, 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FlattenLinear(nn.Module):  # input 1x3x16x16
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(4)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = torch.flatten(x, 1)  # no global pooling: in_features = C*H*W
        return self.fc2(self.relu2(self.fc1(x)))


class LinearLinear(nn.Module):  # input 1x20
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(32, 5)

    def forward(self, x):
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


class Shuffle(nn.Module):
    def __init__(self, groups: int = 4):
        super().__init__()
        self.groups = groups
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        n, c, h, w = x.size()
        g = self.groups
        x = x.view(n, g, c // g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*cbr(3, 16, 3), nn.MaxPool2d(2), *cbr(16, 32, 3))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        f = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(f), f


class NoForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)

    @torch.jit.export
    def predict(self, x):
        return self.conv(x)


class TwoInputs(nn.Module):
    """An image and a vector of clinical values, one forward argument
    each: gopruner passes forward one tensor, so it refuses this model."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.meta = nn.Linear(4, 8)

    def forward(self, x, meta):
        return self.conv(x).mean((2, 3)) + self.meta(meta)


class RandomOps(nn.Module):
    """Each random op a model's training runs, for the shim's per-module
    random streams (torch: TestModuleRNG): dropout (bernoulli_),
    dropout2d, the fused dropout CUDA takes, bernoulli, and the normal
    and uniform fills, stacked into one [6, *x.shape] output."""

    def forward(self, x):
        a = nn.functional.dropout(x, 0.5, self.training)
        b = nn.functional.dropout2d(x, 0.5, self.training)
        c = torch.native_dropout(x, 0.5, self.training)[0]
        d = torch.bernoulli(torch.full_like(x, 0.5))
        return torch.stack([a, b, c, d, torch.randn_like(x), torch.rand_like(x)])


class Strided1x1(nn.Module):  # input 8x5x16x16
    """A strided 1x1 convolution of 5 input channels, as a pruned ResNet's
    downsample can be. On channels-last input, oneDNN's AVX2 kernel
    computes its weight gradient wrong at 2 threads and corrupts the heap at
    1 (oneDNN issue #6035; torch: TestStrided1x1Gradient)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(5, 16, 1, stride=2, bias=False)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


class AuxTooSmall(nn.Module):  # input 1x3x32x32
    """A classifier whose auxiliary head, run only in training, pools with
    a window larger than its 16x16 feature map: the training-mode forward
    fails at this input size, so the training-mode trace cannot be made."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)
        self.aux = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        out = self.fc(y.mean((2, 3)))
        if self.training:
            out = out + self.aux(torch.nn.functional.avg_pool2d(y, 32)).sum()
        return out


class MNISTNet(nn.Module):  # input 1x1x28x28
    """The classic two-conv MNIST classifier (with BatchNorm): the model of
    the train-vs-PyTorch acceptance. After one epoch at lr 0.05 its val
    accuracy depends far less on the batch order (90-96% over seeds 0-3 in
    either loop) than the demo CNN's (25-93%)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        return self.fc2(self.relu(self.fc1(torch.flatten(x, 1))))


class ViewFlatten(FlattenLinear):  # input 1x3x16x16
    """FlattenLinear flattening with x.view(n, -1), as older model code does:
    that needs the activation in NCHW memory, so training must not feed it
    NHWC batches."""

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        return self.fc2(self.relu2(self.fc1(x.view(x.size(0), -1))))


class Grouped(nn.Module):  # input 1x3x32x32
    """Grouped convolutions that keep the channel count: a ResNeXt bottleneck
    (groups=4, 8 channels per group, biased grouped conv) with its residual,
    a RegNet-style stage (groups of 4), then a grouped transposed conv
    (groups=4, 12 channels per group) feeding the classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 32, 3, 2))
        self.b1 = nn.Sequential(*cbr(32, 32, 1), nn.Conv2d(32, 32, 3, 1, 1, groups=4),
                                nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                                nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.relu = nn.ReLU(inplace=True)
        self.b2 = nn.Sequential(*cbr(32, 24, 1), nn.Conv2d(24, 24, 3, 2, 1, groups=6, bias=False),
                                nn.BatchNorm2d(24), nn.ReLU(inplace=True), *cbr(24, 48, 1))
        self.up = nn.Sequential(nn.ConvTranspose2d(48, 48, 3, 1, 1, groups=4), nn.BatchNorm2d(48),
                                nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu(x + self.b1(x))
        x = self.up(self.b2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


IMG32 = [1, 3, 32, 32]

# name, class, input shape
SMALL_MODELS = [
    ("smallcnn", SmallCNN, IMG32),
    ("residual", Residual, IMG32),
    ("se", SE, IMG32),
    ("concat", Concat, IMG32),
    ("depthwise", Depthwise, IMG32),
    ("grouped", Grouped, IMG32),
    ("flatten_linear", FlattenLinear, [1, 3, 16, 16]),
    ("linear_linear", LinearLinear, [1, 20]),
    ("shuffle", Shuffle, IMG32),
    ("tuple_out", TupleOut, IMG32),
    ("mnistnet", MNISTNet, [1, 1, 28, 28]),
    ("view_flatten", ViewFlatten, [1, 3, 16, 16]),
]


# ---- coverage fixtures (issue 13) ---------------------------------------------
# One row each of the coverage table: torchvision architectures at small
# inputs, and hand-made nets for the layer kinds torchvision has no small
# model for (Conv3d video, Conv1d signal with ConvTranspose1d and GroupNorm,
# an MLP, a transposed-conv decoder).


class VideoBlock(nn.Module):
    """torchvision's video BasicBlock with Conv3DSimple, spelt with plain
    nn.Conv3d: ptflops (and scripts/flopcount.py) look modules up by exact
    type, so torchvision's Conv3DSimple subclass would count 0 MACs."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False),
                                   nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm3d(cout))
        else:
            self.downsample = None

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R3DSmall(nn.Module):  # input 1x3x4x32x32 (N, C, T, H, W)
    """torchvision's r3d_18 structure (BasicStem, video BasicBlocks of 3x3x3
    Conv3d with BatchNorm3d, ReLU and a residual add, stride-2 stages
    downsampled by a 1x1x1 conv, AdaptiveAvgPool3d, Linear), one block per
    stage and widths 16-128 instead of 64-512: 0.9M params rather than
    r3d_18's 33M."""

    def __init__(self, widths=(16, 32, 64, 128), num_classes=10):
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv3d(3, w0, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(w0), nn.ReLU(inplace=True))
        layers = []
        cin = w0
        for i, w in enumerate(widths):
            layers.append(VideoBlock(cin, w, stride=1 if i == 0 else 2))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Signal1d(nn.Module):  # input 1x2x256 (N, C, L)
    """A 1-d signal encoder/decoder classifier: Conv1d with BatchNorm1d and
    GroupNorm, per-channel PReLU, MaxPool1d, a ConvTranspose1d that doubles
    the length back, AdaptiveAvgPool1d and Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 16, 7, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(16)
        self.act1 = nn.PReLU(16)
        self.pool1 = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(16, 32, 5, padding=2)
        self.gn2 = nn.GroupNorm(4, 32)
        self.act2 = nn.PReLU(32)
        self.pool2 = nn.MaxPool1d(2)
        self.conv3 = nn.Conv1d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm1d(64)
        self.relu3 = nn.ReLU(inplace=True)
        self.up = nn.ConvTranspose1d(64, 32, 4, stride=2, padding=1)
        self.gn4 = nn.GroupNorm(8, 32)
        self.act4 = nn.PReLU(32)
        self.conv5 = nn.Conv1d(32, 32, 3, padding=1, bias=False)
        self.bn5 = nn.BatchNorm1d(32)
        self.relu5 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, 8)

    def forward(self, x):
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))   # 16 x 128
        x = self.pool2(self.act2(self.gn2(self.conv2(x))))   # 32 x 64
        x = self.relu3(self.bn3(self.conv3(x)))              # 64 x 64
        x = self.act4(self.gn4(self.up(x)))                  # 32 x 128
        x = self.relu5(self.bn5(self.conv5(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MLP(nn.Module):  # input 2x20 (batch 2: BatchNorm1d needs N > 1 to trace)
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x)


class TConvDecoder(nn.Module):  # input 1x3x32x32, output 1x3x32x32
    """Encoder-decoder: strided Conv2d down to 8x8, a ConvTranspose2d up to
    16x16, nearest upsampling to 32x32, a grouped ConvTranspose2d (groups=4)
    and a 1x1 output conv."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(*cbr(3, 16, 3, stride=2))
        self.enc2 = nn.Sequential(*cbr(16, 32, 3, stride=2))
        self.up1 = nn.ConvTranspose2d(32, 24, 4, stride=2, padding=1, bias=False)
        self.bn_up1 = nn.BatchNorm2d(24)
        self.relu_up1 = nn.ReLU(inplace=True)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = nn.ConvTranspose2d(24, 16, 3, stride=1, padding=1, groups=4)
        self.bn_up2 = nn.BatchNorm2d(16)
        self.relu_up2 = nn.ReLU(inplace=True)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        x = self.enc2(self.enc1(x))
        x = self.relu_up1(self.bn_up1(self.up1(x)))
        x = self.upsample(x)
        x = self.relu_up2(self.bn_up2(self.up2(x)))
        return self.out(x)


class Siamese(nn.Module):  # input 1x3x32x32
    """A twin network: one backbone (conv-BN-ReLU stem, a horizontal flip of
    its features, a strided conv-BN-ReLU body) run on the image and on its
    mirror image, the two pooled embeddings concatenated for a Linear head.
    Every backbone weight is read by both calls."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 16))
        self.body = nn.Sequential(*cbr(16, 32, 3, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, 10)

    def embed(self, x):
        x = torch.flip(self.stem(x), [3])
        return torch.flatten(self.pool(self.body(x)), 1)

    def forward(self, x):
        return self.head(torch.cat([self.embed(x), self.embed(torch.flip(x, [3]))], 1))


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): a channel gate from
    one MLP run on the average- and on the max-pooled features, then a
    spatial gate from a 7x7 conv over the mean and the max across the
    channels."""

    def __init__(self, c, r=4, amax=True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c, c // r, 1), nn.ReLU(inplace=True), nn.Conv2d(c // r, c, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.amax = amax

    def forward(self, x):
        avg = self.mlp(torch.nn.functional.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(torch.nn.functional.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx)
        if self.amax:
            cmax = x.amax(dim=1, keepdim=True)
        else:  # as CBAM is usually written: the values of max, the indices dropped
            cmax, _ = torch.max(x, dim=1, keepdim=True)
        s = torch.cat([x.mean(dim=1, keepdim=True), cmax], 1)
        return x * torch.sigmoid(self.spatial(s))


class CBAMNet(nn.Module):  # input 1x3x32x32
    """Two residual stages, each with a CBAM block on its residual branch."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 16))
        self.block1 = nn.Sequential(*cbr(16, 16), *cbr(16, 16, act=nn.Identity()))
        self.att1 = CBAM(16)
        self.down = nn.Sequential(*cbr(16, 32, 3, stride=2))
        self.block2 = nn.Sequential(*cbr(32, 32), *cbr(32, 32, act=nn.Identity()))
        self.att2 = CBAM(32, amax=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        # F.relu, not torch.relu: ptflops (and so scripts/flopcount.py)
        # counts functional activations only through torch.nn.functional.
        x = torch.nn.functional.relu(x + self.att1(self.block1(x)))
        x = self.down(x)
        x = torch.nn.functional.relu(x + self.att2(self.block2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class TCNBlock(nn.Module):
    """A Conv-TasNet / WaveNet block: 1x1 conv, dilated depthwise conv, a
    residual and a skip output."""

    def __init__(self, c, h, dilation):
        super().__init__()
        self.inp = nn.Conv1d(c, h, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(h)
        self.act1 = nn.PReLU(h)
        self.dw = nn.Conv1d(h, h, 3, padding=dilation, dilation=dilation, groups=h, bias=False)
        self.bn2 = nn.BatchNorm1d(h)
        self.act2 = nn.PReLU(h)
        self.res = nn.Conv1d(h, c, 1)
        self.skip = nn.Conv1d(h, c, 1)

    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.act2(self.bn2(self.dw(self.act1(self.bn1(self.inp(x))))))
        return x + self.res(y), self.skip(y)


class TCN(nn.Module):  # input 1x2x256
    """A temporal conv net classifier for signals: three dilated blocks
    whose skip outputs are summed. The last block's residual output is
    computed and dropped, as in a Conv-TasNet whose last block keeps its
    residual conv: that code still runs in the saved model, though nothing
    reads its result."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, 32, 7, padding=3, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.blocks = nn.ModuleList([TCNBlock(32, 64, 2 ** i) for i in range(3)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(32, 64, 1, bias=False), nn.BatchNorm1d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(64, 8)

    def forward(self, x):
        x = self.stem(x)
        s = torch.zeros_like(x)
        for b in self.blocks:
            x, k = b(x)
            s = s + k
        return self.fc(torch.flatten(self.pool(self.head(s)), 1))


class VNetConv(nn.Module):
    """VNet's 5x5x5 conv, BatchNorm and per-channel PReLU."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv3d(c, c, 5, padding=2)
        self.bn = nn.BatchNorm3d(c)
        self.act = nn.PReLU(c)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class VNetIn(nn.Module):
    """VNet's input transition: the one-channel volume repeated across the
    first conv's channels is its residual."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv3d(1, c, 5, padding=2)
        self.bn = nn.BatchNorm3d(c)
        self.act = nn.PReLU(c)

    def forward(self, x):
        rep = torch.cat([x, x, x, x, x, x, x, x], 1)
        return self.act(self.bn(self.conv(x)) + rep)


class VNetDown(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        self.down = nn.Conv3d(c, 2 * c, 2, stride=2)
        self.bn = nn.BatchNorm3d(2 * c)
        self.act1 = nn.PReLU(2 * c)
        self.ops = nn.Sequential(*[VNetConv(2 * c) for _ in range(n)])
        self.act2 = nn.PReLU(2 * c)

    def forward(self, x):
        d = self.act1(self.bn(self.down(x)))
        return self.act2(self.ops(d) + d)


class VNetUp(nn.Module):
    """VNet's up transition: the residual of its convs is the
    concatenation of the upsampled features and the skip."""

    def __init__(self, cin, cout, n):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout // 2, 2, stride=2)
        self.bn = nn.BatchNorm3d(cout // 2)
        self.act1 = nn.PReLU(cout // 2)
        self.ops = nn.Sequential(*[VNetConv(cout) for _ in range(n)])
        self.act2 = nn.PReLU(cout)

    def forward(self, x, skip):
        c = torch.cat([self.act1(self.bn(self.up(x))), skip], 1)
        return self.act2(self.ops(c) + c)


class VNet(nn.Module):  # input 1x1x16x24x24
    """A small VNet (Milletari et al. 2016) for volumetric segmentation."""

    def __init__(self):
        super().__init__()
        self.inp = VNetIn(8)
        self.down1 = VNetDown(8, 1)
        self.down2 = VNetDown(16, 2)
        self.up2 = VNetUp(32, 32, 2)
        self.up1 = VNetUp(32, 16, 1)
        self.head = nn.Conv3d(16, 2, 1)

    def forward(self, x):
        a = self.inp(x)
        b = self.down1(a)
        u = self.up2(self.down2(b), b)
        u = self.up1(u, a)
        return torch.softmax(self.head(u), 1)


class GhostModule(nn.Module):
    """GhostNet's module: half the channels from a 1x1 conv, the other half
    from a cheap depthwise conv of those, concatenated and cut to oup."""

    def __init__(self, inp, oup, relu=True):
        super().__init__()
        self.oup = oup
        init = (oup + 1) // 2
        act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.primary = nn.Sequential(nn.Conv2d(inp, init, 1, bias=False), nn.BatchNorm2d(init), act)
        act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.cheap = nn.Sequential(nn.Conv2d(init, init, 3, padding=1, groups=init, bias=False), nn.BatchNorm2d(init), act)

    def forward(self, x):
        p = self.primary(x)
        return torch.cat([p, self.cheap(p)], 1)[:, :self.oup, :, :]


class GhostNet(nn.Module):  # input 1x3x32x32
    """Ghost bottlenecks with identity shortcuts: each adds two copies of
    one set of channels (primary, cheap) to the block's input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.g1 = nn.Sequential(GhostModule(16, 32), GhostModule(32, 16, relu=False))
        self.g2 = nn.Sequential(GhostModule(16, 48), GhostModule(48, 16, relu=False))
        self.head = nn.Sequential(nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.g1(x) + x
        x = self.g2(x) + x
        return self.fc(torch.flatten(self.pool(self.head(x)), 1))


class ECA(nn.Module):
    """ECA-Net's channel attention: a Conv1d of kernel 3 across the pooled
    channels gates them."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y)


class ECANet(CBAMNet):  # input 1x3x32x32
    """cbam's residual stages with ECA attention on the residual branch."""

    def __init__(self):
        super().__init__()
        self.att1 = ECA()
        self.att2 = ECA()


class BasicBlockA(nn.Module):
    """A CIFAR ResNet block (He et al. 2016, section 4.2) with the
    parameter-free "option A" shortcut: subsample and pad the channels
    with zeros."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2
        self.down = stride != 1 or cin != cout

    def forward(self, x):
        y = self.bn2(self.conv2(torch.nn.functional.relu(self.bn1(self.conv1(x)))))
        if self.down:
            sc = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)
        else:
            sc = x
        return torch.nn.functional.relu(y + sc)


class ResNet20A(nn.Module):  # input 1x3x32x32
    """ResNet-20 for CIFAR as pruning papers use it: 3 stages of 3 blocks,
    16/32/64 channels, option-A shortcuts."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for k in range(3):
                blocks.append(BasicBlockA(cin, cout, stride if k == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.layers(torch.nn.functional.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


class ConvBNSiLU(nn.Module):
    def __init__(self, cin, cout, k=1, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class YoloBottleneck(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cv1 = ConvBNSiLU(c, c, 3)
        self.cv2 = ConvBNSiLU(c, c, 3)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLOv8's C2f: a 1x1 conv chunked in two halves, the second through
    n residual bottlenecks, every output concatenated."""

    def __init__(self, cin, cout, n):
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBNSiLU(cin, 2 * self.c)
        self.cv2 = ConvBNSiLU((2 + n) * self.c, cout)
        self.m = nn.ModuleList([YoloBottleneck(self.c) for _ in range(n)])

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """YOLO's spatial pyramid pooling: one max pool applied three times in
    a row, the four stages concatenated."""

    def __init__(self, cin, cout):
        super().__init__()
        self.cv1 = ConvBNSiLU(cin, cin // 2)
        self.cv2 = ConvBNSiLU(cin // 2 * 4, cout)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YoloC2f(nn.Module):  # input 1x3x64x64
    """A YOLOv8-style backbone (strided convs, C2f blocks, SPPF) and a 1x1
    head of 5 box values and 3 classes per cell."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(ConvBNSiLU(3, 16, 3, 2), ConvBNSiLU(16, 32, 3, 2), C2f(32, 32, 1),
                                  ConvBNSiLU(32, 64, 3, 2), C2f(64, 64, 2), SPPF(64, 64))
        self.head = nn.Conv2d(64, 8, 1)

    def forward(self, x):
        return self.head(self.body(x))


class SegNet(nn.Module):  # input 1x1x32x32
    """SegNet (Badrinarayanan et al. 2017): the encoder's max pools return
    their indices, and the decoder's max_unpool2d puts each value back where
    its maximum was, at the matching encoder stage's channels."""

    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList([nn.Sequential(*cbr(1, 16)), nn.Sequential(*cbr(16, 32), *cbr(32, 32)),
                                  nn.Sequential(*cbr(32, 64), *cbr(64, 64))])
        self.dec = nn.ModuleList([nn.Sequential(*cbr(64, 64), *cbr(64, 32)), nn.Sequential(*cbr(32, 32), *cbr(32, 16)),
                                  nn.Sequential(*cbr(16, 16))])
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        idx: List[torch.Tensor] = []
        sizes: List[List[int]] = []
        for e in self.enc:
            x = e(x)
            sizes.append(x.size())
            x, i = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
            idx.append(i)
        for k, d in enumerate(self.dec):
            j = len(self.enc) - 1 - k
            x = d(torch.nn.functional.max_unpool2d(x, idx[j], 2, 2, output_size=sizes[j]))
        return self.head(x)


class SKConv(nn.Module):
    """SKNet's selective kernel convolution (Li et al. 2019): grouped 3x3
    branches of dilation 1 and 2, stacked; their sum, pooled, gives one
    attention vector per branch, and a softmax across the branches weights
    them."""

    def __init__(self, c, groups=4, r=4):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 3, 1, d, dilation=d, groups=groups, bias=False),
                                                     nn.BatchNorm2d(c), nn.ReLU(inplace=True)) for d in (1, 2)])
        self.fc = nn.Sequential(nn.Conv2d(c, c // r, 1, bias=False), nn.BatchNorm2d(c // r), nn.ReLU(inplace=True))
        self.fcs = nn.ModuleList([nn.Conv2d(c // r, c, 1) for _ in self.branches])

    def forward(self, x):
        feats = torch.stack([b(x) for b in self.branches], 1)
        z = self.fc(feats.sum(1).mean((2, 3), keepdim=True))
        att = torch.softmax(torch.stack([f(z) for f in self.fcs], 1), 1)
        return (feats * att).sum(1)


class SKUnit(nn.Module):
    """An SKNet bottleneck: 1x1 conv, SKConv, 1x1 conv, and the residual."""

    def __init__(self, cin, mid, cout, stride=1):
        super().__init__()
        self.body = nn.Sequential(*cbr(cin, mid, 1), SKConv(mid), nn.Conv2d(mid, cout, 1, stride, bias=False),
                                  nn.BatchNorm2d(cout))
        self.short = (nn.Identity() if cin == cout and stride == 1 else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.nn.functional.relu(self.body(x) + self.short(x))


class SKNet(nn.Module):  # input 1x3x32x32
    """A small SKNet: a stem, two SK units a stage, two stages."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 32))
        self.units = nn.Sequential(SKUnit(32, 32, 64), SKUnit(64, 32, 64), SKUnit(64, 64, 128, 2), SKUnit(128, 64, 128))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


class GatedBlock(nn.Module):
    """A gated residual block for signals (Dauphin et al. 2017's gated
    convolution): a conv to twice the width, a GLU over the channels that
    gates one half by the other, and the residual."""

    def __init__(self, c, dilation):
        super().__init__()
        self.conv = nn.Conv1d(c, 2 * c, 3, padding=dilation, dilation=dilation)
        self.bn = nn.BatchNorm1d(2 * c)

    def forward(self, x):
        return x + torch.nn.functional.glu(self.bn(self.conv(x)), 1)


class GatedEmbed(nn.Module):  # input 1x2x256
    """A signal encoder of gated blocks that ends in an L2-normalised
    embedding, as metric-learning models for ECG or EEG do; the features
    are normalised over the channels before pooling too."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(2, 32, 7, padding=3, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.blocks = nn.Sequential(GatedBlock(32, 1), GatedBlock(32, 2), nn.Conv1d(32, 64, 3, 2, 1),
                                    GatedBlock(64, 4))
        self.proj = nn.Linear(64, 16)

    def forward(self, x):
        y = torch.nn.functional.normalize(self.blocks(self.stem(x)), dim=1)
        return torch.nn.functional.normalize(self.proj(y.mean(-1)), dim=1)


class SubPixelNet(nn.Module):  # input 1x1x32x32
    """A segmentation net that moves channels to and from space: a
    pixel_unshuffle (space to depth) downsamples, and a sub-pixel conv
    (conv to 4x the channels, PixelShuffle, as ESPCN and super-resolution
    nets upsample) comes back up, added to the stem's features."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(1, 16))
        self.down = nn.Sequential(*cbr(64, 32))
        self.body = nn.Sequential(*cbr(32, 32), *cbr(32, 32))
        self.up = nn.Sequential(nn.Conv2d(32, 16 * 4, 3, 1, 1), nn.PixelShuffle(2), nn.BatchNorm2d(16))
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        s = self.stem(x)
        y = self.down(torch.nn.functional.pixel_unshuffle(s, 2))
        y = y + self.body(y)
        return self.head(torch.nn.functional.relu(self.up(y) + s))


class InceptionModule1d(nn.Module):
    """InceptionTime's module (Ismail Fawaz et al. 2020): a 1x1 bottleneck,
    three convs of long kernels with padding="same" (one even, padded
    unevenly), a max-pool branch, concatenated."""

    def __init__(self, cin, nf=8):
        super().__init__()
        self.bottleneck = nn.Conv1d(cin, nf, 1, bias=False)
        self.convs = nn.ModuleList([nn.Conv1d(nf, nf, k, padding="same", bias=False) for k in (9, 20, 39)])
        self.pool = nn.Sequential(nn.MaxPool1d(3, 1, 1), nn.Conv1d(cin, nf, 1, bias=False))
        self.bn = nn.BatchNorm1d(4 * nf)

    def forward(self, x):
        b = self.bottleneck(x)
        return torch.nn.functional.relu(self.bn(torch.cat([c(b) for c in self.convs] + [self.pool(x)], 1)))


class InceptionTime(nn.Module):  # input 1x12x256 (a 12-lead ECG)
    """An InceptionTime classifier: three inception modules with a
    residual shortcut, a depthwise-separable conv with padding="same", and
    global average pooling."""

    def __init__(self):
        super().__init__()
        self.mods = nn.Sequential(InceptionModule1d(12), InceptionModule1d(32), InceptionModule1d(32))
        self.short = nn.Sequential(nn.Conv1d(12, 32, 1, bias=False), nn.BatchNorm1d(32))
        self.dw = nn.Sequential(nn.Conv1d(32, 32, 5, padding="same", groups=32, bias=False), nn.Conv1d(32, 48, 1),
                                nn.BatchNorm1d(48), nn.ReLU())
        self.fc = nn.Linear(48, 5)

    def forward(self, x):
        y = torch.nn.functional.relu(self.mods(x) + self.short(x))
        return self.fc(self.dw(y).mean(-1))


class WNConv1d(nn.Conv1d):
    """A Conv1d under weight normalisation, w = g·v/‖v‖ per output channel,
    as torch.nn.utils.weight_norm makes it (weight_g, weight_v) but written
    out in forward: the hook weight_norm installs cannot be scripted, and a
    trace of either records the same aten::_weight_norm. Counted as the
    Conv1d it is (ptflops counts a Conv1d under weight_norm)."""

    counted_as = nn.Conv1d

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        w = self.weight.detach()
        del self.weight
        self.weight_g = nn.Parameter(torch.norm_except_dim(w, 2, 0) * (0.5 + torch.rand(w.shape[0], 1, 1)))
        self.weight_v = nn.Parameter(w.clone())

    def forward(self, x):
        return self._conv_forward(x, torch._weight_norm(self.weight_v, self.weight_g, 0), self.bias)


class _WNParams(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.original0 = nn.Parameter(torch.norm_except_dim(w, 2, 0) * (0.5 + torch.rand(w.shape[0], 1)))
        self.original1 = nn.Parameter(w.clone())


class _WNHolder(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = _WNParams(w)


class WNLinear(nn.Linear):
    """A Linear under weight normalisation with PyTorch 2's parametrization
    names (parametrizations.weight.original0 is g, original1 is v)."""

    counted_as = nn.Linear

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        w = self.weight.detach()
        del self.weight
        self.parametrizations = _WNHolder(w)

    def forward(self, x):
        p = self.parametrizations.weight
        return torch.nn.functional.linear(x, torch._weight_norm(p.original1, p.original0, 0), self.bias)


class WNTemporalBlock(nn.Module):
    """The TCN block of Bai et al. (locuslab/TCN): two weight-normalised
    dilated causal convs (padded, then chomped back to the input length)
    and a residual, through a 1x1 conv where the width changes."""

    def __init__(self, i, o, d):
        super().__init__()
        self.c1 = WNConv1d(i, o, 3, padding=2 * d, dilation=d)
        self.c2 = WNConv1d(o, o, 3, padding=2 * d, dilation=d)
        self.down = nn.Conv1d(i, o, 1) if i != o else nn.Identity()

    def forward(self, x):
        n = x.shape[-1]
        y = torch.nn.functional.relu(self.c1(x)[:, :, :n])
        y = torch.nn.functional.relu(self.c2(y)[:, :, :n])
        return torch.nn.functional.relu(y + self.down(x))


class WNTCN(nn.Module):  # input 1x2x256
    """A TCN for signals with weight normalisation throughout: three
    temporal blocks and a weight-normalised classifier on the last step."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(WNTemporalBlock(2, 24, 1), WNTemporalBlock(24, 24, 2), WNTemporalBlock(24, 32, 4))
        self.fc = WNLinear(32, 5)

    def forward(self, x):
        return self.fc(self.blocks(x)[:, :, -1])


class CoordConvNet(nn.Module):  # input 1x3x32x32
    """CoordConv (Liu et al. 2018): two planes of pixel coordinates, which do
    not depend on the input, concatenated to the features before a conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(18, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        y = self.a(x)
        n, h, w = y.shape[0], y.shape[2], y.shape[3]
        ys = torch.linspace(-1.0, 1.0, h, device=y.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=y.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return self.fc(self.b(torch.cat([ys, y, xs], 1)).mean((2, 3)))


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019): a softmax over bmm(q, k)
    weights the values, added back with a learnt scale."""

    def __init__(self, c):
        super().__init__()
        self.q = nn.Conv2d(c, c // 4, 1)
        self.k = nn.Conv2d(c, c // 4, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        q = self.q(x).flatten(2).permute(0, 2, 1)
        att = torch.softmax(torch.bmm(q, self.k(x).flatten(2)), dim=-1)
        o = torch.bmm(self.v(x).flatten(2), att.permute(0, 2, 1))
        return self.gamma * o.view_as(x) + x


class NonLocal(nn.Module):
    """A non-local block (Wang et al. 2018, embedded Gaussian) written with
    torch.matmul."""

    def __init__(self, c):
        super().__init__()
        self.inter = c // 2
        self.theta = nn.Conv2d(c, self.inter, 1)
        self.phi = nn.Conv2d(c, self.inter, 1)
        self.g = nn.Conv2d(c, self.inter, 1)
        self.w = nn.Sequential(nn.Conv2d(self.inter, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        f = torch.matmul(self.theta(x).flatten(2).transpose(1, 2), self.phi(x).flatten(2))
        y = torch.matmul(torch.softmax(f, dim=-1), self.g(x).flatten(2).transpose(1, 2))
        return x + self.w(y.transpose(1, 2).reshape(n, -1, h, w))


class AttentionNet(nn.Module):  # input 1x3x32x32
    """Products of activations: SAGAN self-attention, a non-local block and
    a squeeze-excitation gate applied with torch.einsum."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 16), *cbr(16, 32, stride=2))
        self.att = SelfAttention(32)
        self.nl = NonLocal(32)
        self.se = nn.Sequential(nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 32))
        self.down = nn.Sequential(*cbr(32, 48, stride=2))
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.nl(self.att(self.stem(x)))
        x = torch.einsum("bchw,bc->bchw", x, torch.sigmoid(self.se(x.mean((2, 3)))))
        return self.fc(self.down(x).mean((2, 3)))


class SizedSelfAttention(SelfAttention):
    """SAGAN's self-attention as its authors wrote it: the channel count
    read off the input with x.size() and written back into the views."""

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.q(x).view(b, -1, h * w).permute(0, 2, 1)
        att = torch.softmax(torch.bmm(q, self.k(x).view(b, -1, h * w)), dim=-1)
        o = torch.bmm(self.v(x).view(b, -1, h * w), att.permute(0, 2, 1))
        return self.gamma * o.view(b, c, h, w) + x


class SizedNonLocal(NonLocal):
    """A non-local block whose views write its inner width in
    (x.view(b, self.inter, -1)), as most implementations do."""

    def forward(self, x):
        b = x.size(0)
        th = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        f = torch.softmax(torch.matmul(th, self.phi(x).view(b, self.inter, -1)), dim=-1)
        y = torch.matmul(f, self.g(x).view(b, self.inter, -1).permute(0, 2, 1))
        y = y.permute(0, 2, 1).contiguous().view(b, self.inter, x.size(2), x.size(3))
        return x + self.w(y)


class Res2Block(nn.Module):
    """A Res2Net bottleneck (Gao et al. 2019): a 1x1 conv's output split
    by a width the code keeps, torch.split(out, self.width, 1), each part
    after the first added to the previous part's 3x3 conv output."""

    def __init__(self, c, width=8, scale=4):
        super().__init__()
        self.width, self.scale = width, scale
        self.conv1 = nn.Sequential(*cbr(c, width * scale, 1))
        self.convs = nn.ModuleList([nn.Sequential(*cbr(width, width)) for _ in range(scale - 1)])
        self.conv3 = nn.Sequential(nn.Conv2d(width * scale, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        spx = torch.split(self.conv1(x), self.width, 1)
        outs: List[torch.Tensor] = []
        sp = spx[0]
        for i, conv in enumerate(self.convs):
            sp = conv(spx[i] if i == 0 else sp + spx[i])
            outs.append(sp)
        outs.append(spx[self.scale - 1])
        return torch.nn.functional.relu(self.conv3(torch.cat(outs, 1)) + x)


class SizedViewNet(nn.Module):  # input 1x3x32x32
    """Channel counts written into the code: the attention blocks above,
    nested two modules deep, one of them run twice, a Res2Net block's
    split by width, and a LeNet-style classifier that flattens with
    x.view(-1, 48 * 8 * 8)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*cbr(3, 16), *cbr(16, 32, stride=2))
        self.stage = nn.Sequential(SizedSelfAttention(32), SizedNonLocal(32))
        self.res2 = Res2Block(32)
        self.down = nn.Sequential(*cbr(32, 48, stride=2))
        self.fc1 = nn.Linear(48 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stage(self.stem(x))
        x = self.res2(self.stage(x))  # the same blocks again: two call sites
        x = self.down(x).view(-1, 48 * 8 * 8)
        return self.fc2(torch.nn.functional.relu(self.fc1(x)))


class StdConv2d(nn.Conv2d):
    """timm's StdConv2d (BiT): each filter standardised to zero mean and
    unit variance in forward, by a batch_norm over weight.reshape(1,
    out_channels, -1). Counted as the Conv2d it is."""

    counted_as = nn.Conv2d

    def __init__(self, *args, eps=1e-6, **kw):
        super().__init__(*args, **kw)
        self.eps = eps

    def forward(self, x):
        w = torch.nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                                           training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return torch.nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BiTUnit(nn.Module):
    """A pre-activation bottleneck of BiT's ResNetV2: GroupNorm, ReLU and
    standardised convs, the projection shortcut reading the activated
    input."""

    def __init__(self, i, o, stride):
        super().__init__()
        mid = o // 2
        self.gn1 = nn.GroupNorm(4, i)
        self.conv1 = StdConv2d(i, mid, 1, bias=False)
        self.gn2 = nn.GroupNorm(4, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(4, mid)
        self.conv3 = StdConv2d(mid, o, 1, bias=False)
        self.down = StdConv2d(i, o, 1, stride=stride, bias=False) if (i != o or stride != 1) else None

    def forward(self, x):
        y = torch.nn.functional.relu(self.gn1(x))
        sc = x if self.down is None else self.down(y)
        y = self.conv2(torch.nn.functional.relu(self.gn2(self.conv1(y))))
        return self.conv3(torch.nn.functional.relu(self.gn3(y))) + sc


class BiTResNetV2(nn.Module):  # input 1x3x32x32
    """BiT's ResNetV2 (Kolesnikov et al. 2020), scaled down: a standardised
    stem, two stages of pre-activation bottlenecks, GroupNorm and ReLU
    before the pooled head."""

    def __init__(self):
        super().__init__()
        self.stem = StdConv2d(3, 16, 3, padding=1, bias=False)
        self.units = nn.Sequential(BiTUnit(16, 32, 1), BiTUnit(32, 32, 1), BiTUnit(32, 64, 2))
        self.norm = nn.GroupNorm(8, 64)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        return self.head(torch.nn.functional.relu(self.norm(self.units(self.stem(x)))).mean((2, 3)))


class ScaledStdConv2d(nn.Conv2d):
    """timm's ScaledStdConv2d (NFNets): standardised filters times a learnt
    per-filter gain, given to the batch_norm as its weight."""

    counted_as = nn.Conv2d

    def __init__(self, i, o, k, stride=1, padding=0, gamma=1.0, eps=1e-6):
        super().__init__(i, o, k, stride, padding, bias=True)
        self.gain = nn.Parameter(0.5 + torch.rand(o, 1, 1, 1))
        self.scale = gamma * self.weight[0].numel() ** -0.5
        self.eps = eps

    def forward(self, x):
        w = torch.nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                                           weight=(self.gain * self.scale).view(-1), training=True,
                                           momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return torch.nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class VarMeanStdConv2d(nn.Conv2d):
    """BiT's own StdConv2d (google-research/big_transfer): (w - mean) /
    sqrt(var + 1e-10) per filter, from torch.var_mean."""

    counted_as = nn.Conv2d

    def forward(self, x):
        v, m = torch.var_mean(self.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (self.weight - m) / torch.sqrt(v + 1e-10)
        return torch.nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class NFBlock(nn.Module):
    """A normalizer-free residual block: no BatchNorm, the input scaled by
    1/beta, the residual by alpha, GELU activations."""

    def __init__(self, c, beta):
        super().__init__()
        self.beta = beta
        self.conv1 = ScaledStdConv2d(c, c, 3, padding=1)
        self.conv2 = VarMeanStdConv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = self.conv1(torch.nn.functional.gelu(x) / self.beta)
        return x + 0.2 * self.conv2(torch.nn.functional.gelu(y))


class NFResNet(nn.Module):  # input 1x3x32x32
    """An NF-ResNet (Brock et al. 2021), small: scaled standardised convs
    with gains, BiT-style standardised convs, no normalisation layers, and
    a 1x1 conv before the pooled head."""

    def __init__(self):
        super().__init__()
        self.stem = ScaledStdConv2d(3, 24, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(NFBlock(24, 1.0), NFBlock(24, 1.02))
        self.final = ScaledStdConv2d(24, 48, 1)
        self.fc = nn.Linear(48, 5)

    def forward(self, x):
        y = torch.nn.functional.gelu(self.final(self.blocks(self.stem(x))))
        return self.fc(y.mean((2, 3)))


def _tv(name, **kw):
    def ctor():
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None, **kw)
    return ctor


def _resnext14_32x4d():
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4)


def _convnext_mini():
    """convnext_tiny's structure (stem, CNBlocks with depthwise 7x7 conv,
    channels-last LayerNorm, Linear-GELU-Linear, layer_scale, downsampling
    LayerNorm2d + 2x2 conv) with one block a stage and a quarter of the
    widths: 0.5M params instead of 28M, for fast tests."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    cfg = [CNBlockConfig(24, 48, 1), CNBlockConfig(48, 96, 1), CNBlockConfig(96, 192, 1),
           CNBlockConfig(192, None, 1)]
    return ConvNeXt(cfg, num_classes=10)


def _segmentation(name, **kw):
    def ctor():
        import torchvision.models.segmentation as seg

        return getattr(seg, name)(weights=None, weights_backbone=None, **kw)
    return ctor


IMG64 = [1, 3, 64, 64]

# The rows of the coverage table (internal/fixtures.Coverage): name,
# constructor, input shape.
COVERAGE_MODELS = [
    ("googlenet", _tv("googlenet", aux_logits=False, init_weights=False), IMG64),
    # The auxiliary classifiers run only in training mode: the eval trace
    # never shows what they read.
    ("googlenet_aux", _tv("googlenet", aux_logits=True, init_weights=False), IMG64),
    # inception_v3 needs at least 75x75.
    ("inception_v3", _tv("inception_v3", aux_logits=False, init_weights=False), [1, 3, 80, 80]),
    # ResNet with 1 grouped Bottleneck a stage: 14 weighted layers (stem conv,
    # 4x3 block convs, fc) plus 4 downsample convs.
    ("resnext14_32x4d", _resnext14_32x4d, IMG64),
    ("regnet_x_400mf", _tv("regnet_x_400mf"), IMG64),
    ("convnext_tiny", _tv("convnext_tiny"), IMG64),
    ("convnext_mini", _convnext_mini, IMG64),
    ("shufflenet_v2_x1_0", _tv("shufflenet_v2_x1_0"), IMG64),
    ("lraspp_mobilenet_v3_large", _segmentation("lraspp_mobilenet_v3_large"), IMG64),
    ("deeplabv3_mobilenet_v3_large", _segmentation("deeplabv3_mobilenet_v3_large", aux_loss=False), IMG64),
    ("r3d_small", R3DSmall, [1, 3, 4, 32, 32]),
    ("signal1d", Signal1d, [1, 2, 256]),
    ("mlp", MLP, [2, 20]),
    ("tconv_decoder", TConvDecoder, IMG32),
    # MBConv blocks: SiLU, squeeze-and-excitation with a sigmoid gate,
    # stochastic depth (identity in eval), depthwise convs.
    ("efficientnet_b0", _tv("efficientnet_b0"), IMG64),
    # Fire modules: two expand convs concatenated, no BatchNorm, a conv
    # classifier.
    ("squeezenet1_0", _tv("squeezenet1_0"), IMG64),
    ("mnasnet0_5", _tv("mnasnet0_5"), IMG64),
    # Hardswish, squeeze-and-excitation with a hardsigmoid gate.
    ("mobilenet_v3_small", _tv("mobilenet_v3_small"), IMG64),
    # Weights shared between calls, a flip along the width.
    ("siamese", Siamese, IMG32),
    # A shared MLP, the mean and the max across the channels.
    ("cbam", CBAMNet, IMG32),
    # Skip outputs summed; a residual output computed and dropped.
    ("tcn", TCN, [1, 2, 256]),
    # A residual over a concatenation (VNet's up transitions) and the input
    # repeated across the channels; 3-D, PReLU, a softmax over the classes.
    ("vnet", VNet, [1, 1, 16, 24, 24]),
    # The same channels twice (primary, cheap) added to the block input.
    ("ghostnet", GhostNet, IMG32),
    # A Conv1d across the channels (ECA attention).
    ("eca", ECANet, IMG32),
    # Shortcuts that pad the channels with zeros (CIFAR ResNet, option A).
    ("resnet20a", ResNet20A, IMG32),
    # Halves of a torch.chunk along the channels (YOLOv8's C2f), SPPF.
    ("yolo_c2f", YoloC2f, IMG64),
    # Pooling indices that the decoder's max_unpool2d reads.
    ("segnet", SegNet, [1, 1, 32, 32]),
    # Branches stacked, summed and weighted by a softmax across them.
    ("sknet", SKNet, IMG32),
    # GLUs over the channels; features and embedding L2-normalised.
    ("gated_embed", GatedEmbed, [1, 2, 256]),
    # pixel_unshuffle down, a sub-pixel conv (PixelShuffle) up.
    ("subpixel", SubPixelNet, [1, 1, 32, 32]),
    # Convs with padding="same" (traced as aten::_convolution_mode), one of
    # them depthwise.
    ("inception_time", InceptionTime, [1, 12, 256]),
    # Weight normalisation (g·v/‖v‖) of every conv and of the classifier,
    # chomped causal convs.
    ("wn_tcn", WNTCN, [1, 2, 256]),
    # Coordinate planes concatenated to the features (CoordConv).
    ("coordconv", CoordConvNet, IMG32),
    # Products of activations: bmm and matmul (self-attention, non-local),
    # einsum (a channel gate).
    ("attention", AttentionNet, IMG32),
    # Channel counts written into views (self.inter, x.size(), LeNet's
    # flatten) and a split's width (Res2Net), rewritten by surgery where
    # the trace found them.
    ("sized_views", SizedViewNet, IMG32),
    # Weight standardisation (BiT's ResNetV2, timm's StdConv2d) with
    # GroupNorm: inexact groups, one exact (the last stage's output).
    ("bit_resnetv2", BiTResNetV2, IMG32),
    # Normalizer-free: standardised convs with gains, and BiT's var_mean form.
    ("nf_resnet", NFResNet, IMG32),
]
