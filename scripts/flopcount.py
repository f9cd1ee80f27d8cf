"""MAC/param counter for eager nn.Modules, independent of gopruner.

Implements ptflops' pytorch-backend formulas (get_model_complexity_info)
with forward hooks on modules, and counts the torch.nn.functional calls that
gopruner also counts (activations, pools, interpolate) when they are made
outside a counted module, as ptflops' count_functional does: torchvision's
googlenet and inception call F.relu and F.max_pool2d, its segmentation heads
F.interpolate. Other functional and tensor ops (torch.cat, x * s, ...) count
0, as in gopruner. Used by make_fixtures.py and make_demo_model.py to write
reference numbers that the Go flops package is tested against. Run with
Debian's /usr/bin/python3 (torch 1.13).
"""
import math

import torch.nn as nn


def _prod(xs):
    return int(math.prod(int(x) for x in xs))


def _first_tensor(x):
    if isinstance(x, (tuple, list)):
        return x[0] if x else None
    return x


def _conv(m, inp, out):
    # ptflops' conv hook, which it also maps the transposed convs to: the
    # positions are the OUTPUT's for both (a transposed conv's weight is
    # [in, out/groups, k...], so per_pos is numel(weight) either way).
    n = out.shape[0]
    out_spatial = _prod(out.shape[2:])
    kernel = _prod(m.kernel_size)
    per_pos = kernel * m.in_channels * (m.out_channels // m.groups)
    active = n * out_spatial
    macs = per_pos * active
    if m.bias is not None:
        macs += m.out_channels * active
    return macs


def _linear(m, inp, out):
    x = inp
    bias = out.shape[-1] if m.bias is not None else 0
    return int((x.shape[-1] * out.shape[-1] + bias) * _prod(x.shape[:-1]))


def _bn(m, inp, out):
    # BatchNorm, InstanceNorm and GroupNorm all have `affine`.
    n = inp.numel()
    return 2 * n if m.affine else n


def _numel_out(m, inp, out):
    return out.numel()


def _numel_in(m, inp, out):
    return inp.numel()


# Exact-type lookup, as ptflops does (type(module) in MODULES_MAPPING).
RULES = {
    nn.Conv1d: ("conv", _conv),
    nn.Conv2d: ("conv", _conv),
    nn.Conv3d: ("conv", _conv),
    # ptflops counts transposed convs with the same hook (output positions).
    nn.ConvTranspose1d: ("conv", _conv),
    nn.ConvTranspose2d: ("conv", _conv),
    nn.ConvTranspose3d: ("conv", _conv),
    nn.Linear: ("linear", _linear),
    nn.BatchNorm1d: ("batch_norm", _bn),
    nn.BatchNorm2d: ("batch_norm", _bn),
    nn.BatchNorm3d: ("batch_norm", _bn),
    nn.InstanceNorm1d: ("instance_norm", _bn),
    nn.InstanceNorm2d: ("instance_norm", _bn),
    nn.InstanceNorm3d: ("instance_norm", _bn),
    nn.GroupNorm: ("group_norm", _bn),
    nn.ReLU: ("activation", _numel_out),
    nn.ReLU6: ("activation", _numel_out),
    nn.LeakyReLU: ("activation", _numel_out),
    nn.ELU: ("activation", _numel_out),
    nn.PReLU: ("activation", _numel_out),
    nn.Hardtanh: ("activation", _numel_out),
    nn.MaxPool1d: ("pool", _numel_in),
    nn.MaxPool2d: ("pool", _numel_in),
    nn.MaxPool3d: ("pool", _numel_in),
    nn.AvgPool1d: ("pool", _numel_in),
    nn.AvgPool2d: ("pool", _numel_in),
    nn.AvgPool3d: ("pool", _numel_in),
    nn.AdaptiveAvgPool1d: ("pool", _numel_in),
    nn.AdaptiveAvgPool2d: ("pool", _numel_in),
    nn.AdaptiveAvgPool3d: ("pool", _numel_in),
    nn.AdaptiveMaxPool1d: ("pool", _numel_in),
    nn.AdaptiveMaxPool2d: ("pool", _numel_in),
    nn.AdaptiveMaxPool3d: ("pool", _numel_in),
    nn.Upsample: ("upsample", _numel_out),
    nn.UpsamplingNearest2d: ("upsample", _numel_out),
    nn.UpsamplingBilinear2d: ("upsample", _numel_out),
}


# torch.nn.functional calls counted outside counted modules, by the rule of
# the module that wraps each (numel of the output or of the input).
FUNCTIONAL = {
    "relu": ("activation", "out"), "relu_": ("activation", "out"),
    "relu6": ("activation", "out"), "hardtanh": ("activation", "out"),
    "hardtanh_": ("activation", "out"), "leaky_relu": ("activation", "out"),
    "leaky_relu_": ("activation", "out"), "elu": ("activation", "out"),
    "elu_": ("activation", "out"), "prelu": ("activation", "out"),
    "max_pool1d": ("pool", "in"), "max_pool2d": ("pool", "in"), "max_pool3d": ("pool", "in"),
    "avg_pool1d": ("pool", "in"), "avg_pool2d": ("pool", "in"), "avg_pool3d": ("pool", "in"),
    "adaptive_avg_pool1d": ("pool", "in"), "adaptive_avg_pool2d": ("pool", "in"),
    "adaptive_avg_pool3d": ("pool", "in"), "adaptive_max_pool1d": ("pool", "in"),
    "adaptive_max_pool2d": ("pool", "in"), "adaptive_max_pool3d": ("pool", "in"),
    "interpolate": ("upsample", "out"), "upsample": ("upsample", "out"),
}


def count(model, example_inputs):
    """Run model(*example_inputs) once and return
    {"macs": int, "params": int, "layers": [{"name","kind","macs","params","calls"}]}
    where kind is the module's class name (Conv2d, BatchNorm2d, ReLU, ...).

    layers lists every module of a counted type, in module order, with its MACs
    summed over all calls (a module called twice, like resnet's shared relu,
    counts twice). Modules of other types count 0 and are not listed.
    """
    import torch

    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    rows = {}
    order = []
    handles = []
    fn_rows = []
    depth = [0]  # counted modules running: functional calls inside them are theirs
    for name, m in model.named_modules():
        # ptflops matches exact classes; a test model that rewrites a layer's
        # forward (weight normalisation written out so that it scripts)
        # names the class it stands for in counted_as.
        rule = RULES.get(type(m)) or RULES.get(getattr(type(m), "counted_as", None))
        if rule is None:
            continue
        _, fn = rule
        row = {"name": name, "kind": type(m).__name__, "macs": 0,
               "params": sum(p.numel() for p in m.parameters(recurse=False)), "calls": 0}
        rows[id(m)] = row
        order.append(row)

        def pre(mod, inp):
            depth[0] += 1

        def hook(mod, inp, out, row=row, fn=fn):
            depth[0] -= 1
            row["macs"] += int(fn(mod, _first_tensor(inp), _first_tensor(out)))
            row["calls"] += 1

        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(hook))

    import torch.nn.functional as F

    saved = {}
    for fname, (kind, side) in FUNCTIONAL.items():
        orig = getattr(F, fname, None)
        if orig is None:
            continue
        row = {"name": "F." + fname, "kind": "functional " + fname, "macs": 0, "params": 0, "calls": 0}

        def wrapped(*args, orig=orig, row=row, side=side, **kw):
            out = orig(*args, **kw)
            if depth[0] == 0:
                t = _first_tensor(out) if side == "out" else args[0]
                row["macs"] += int(t.numel())
                row["calls"] += 1
            return out

        saved[fname] = orig
        fn_rows.append(row)
        setattr(F, fname, wrapped)
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for fname, orig in saved.items():
            setattr(F, fname, orig)
    order += [r for r in fn_rows if r["calls"] > 0]
    return {
        "macs": sum(r["macs"] for r in order),
        "params": sum(p.numel() for p in model.parameters()),
        "layers": order,
    }
