#!/usr/bin/python3
"""Generate TorchScript test fixtures for gopruner.

Usage: /usr/bin/python3 scripts/make_fixtures.py [OUTDIR] [--force]
       (OUTDIR defaults to .cache/fixtures, relative to the current directory)

Needs Debian's python3-torch 1.13 / python3-torchvision 0.14 (call
/usr/bin/python3 explicitly). Downloads nothing: every model has random
weights (fixed seeds) and randomised BatchNorm statistics/affine parameters so
that equivalence tests are meaningful.

For every model NAME_{scripted,traced}.pt it writes
  NAME.in.f32   example input, raw little-endian float32, C order
  NAME.out.f32  output of the saved-and-reloaded TorchScript model on that input
                (eval, no_grad); for a tuple, NamedTuple or dict output, its
                tensors flattened and concatenated depth first (dict values in
                key order, None elements skipped; see "output_shapes")
  NAME.json     {"input_shape", "output_shape", "output_shapes",
                 "output_structure" ("tensor", "tuple(tensor,tensor)",
                 "dict(out)", "namedtuple(logits,aux_logits)"), "macs",
                 "params", "layers": [...], ...} with MACs counted
                 independently on the eager nn.Module (scripts/flopcount.py,
                 ptflops formulas, count_functional=False); the coverage
                 table's fixtures (fixture_models.COVERAGE_MODELS) also carry
                 "group": "coverage"
and OUTDIR/manifest.json listing everything. When OUTDIR/manifest.json already
carries the sha256 of this script (with fixture_models.py and flopcount.py) and every listed file
exists, the script does nothing.
"""
import argparse
import hashlib
import json
import os
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, HERE)

FORMAT = "gopruner-fixtures/1"


def script_hash():
    h = hashlib.sha256()
    for f in ("make_fixtures.py", "fixture_models.py", "flopcount.py"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def cached(outdir, digest):
    path = os.path.join(outdir, "manifest.json")
    try:
        with open(path) as fh:
            man = json.load(fh)
    except (OSError, ValueError):
        return False
    if man.get("script_sha256") != digest:
        return False
    files = []
    for fx in man.get("fixtures", []):
        files += [fx[k] for k in ("model", "input", "output", "meta") if fx.get(k)]
    for fx in man.get("error_fixtures", []):
        files.append(fx["model"])
    return all(os.path.isfile(os.path.join(outdir, f)) for f in files)


def reexec_with_fixed_hash_seed():
    """TorchScript serialises some module constants in set order, which depends on
    Python's string hash seed; pin it so the .pt files are byte-identical."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("outdir", nargs="?", default=os.path.join(".cache", "fixtures"))
    ap.add_argument("--force", action="store_true", help="regenerate even when cached")
    args = ap.parse_args()

    digest = script_hash()
    if not args.force and cached(args.outdir, digest):
        print(f"fixtures: {args.outdir} up to date (script sha256 {digest[:12]})")
        return 0

    reexec_with_fixed_hash_seed()
    import torch  # noqa: E402  (import only when there is work to do)

    torch.set_num_threads(2)
    os.makedirs(args.outdir, exist_ok=True)
    man_path = os.path.join(args.outdir, "manifest.json")
    if os.path.exists(man_path):
        os.remove(man_path)  # an interrupted run must not look complete

    gen = Generator(args.outdir)
    t0 = time.time()
    gen.run_all()
    elapsed = time.time() - t0

    import torchvision

    man = {
        "format": FORMAT,
        "script_sha256": digest,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "sidecars": {
            "input": "<name>.in.f32: raw little-endian float32, C order, shape input_shape",
            "output": "<name>.out.f32: raw little-endian float32, C order; tuple, NamedTuple "
                      "and dict outputs are concatenated depth first (meta output_shapes)",
            "meta": "<name>.json: input_shape, output_shape, output_shapes, output_structure, "
                    "macs, params, "
                    "layers[{name,kind,macs,params,calls}] (ptflops formulas, modules only)",
        },
        "fixtures": gen.fixtures,
        "error_fixtures": gen.error_fixtures,
        "extra_fixtures": gen.extra_fixtures,
        "notes": gen.notes,
        "elapsed_s": round(elapsed, 1),
    }
    tmp = man_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(man, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, man_path)
    total = sum(os.path.getsize(os.path.join(args.outdir, f)) for f in os.listdir(args.outdir))
    print(f"fixtures: {len(gen.fixtures)} models + {len(gen.error_fixtures)} error files "
          f"in {args.outdir} ({total / 2**20:.1f} MiB) in {elapsed:.1f} s")
    return 0


# --------------------------------------------------------------------------


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def randomise_bn(model, seed):
    """Random statistics and affine parameters for every norm layer, so that a
    pruned channel's norm parameters matter in the equivalence tests. Also
    per-channel PReLU slopes and ConvNeXt's layer_scale: left at their
    constant defaults (0.25, 1e-6) they would hide a wrong slice, or (1e-6)
    make a whole residual branch invisible in the output."""
    import torch
    import torch.nn as nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
                c = m.num_features
                if m.track_running_stats:
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, nn.GroupNorm) and m.affine:
                c = m.num_channels
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                shape = m.normalized_shape
                m.weight.copy_(torch.rand(shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(shape, generator=g) * 0.1)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
            ls = getattr(m, "layer_scale", None)
            if isinstance(ls, nn.Parameter):
                ls.copy_(torch.rand(ls.shape, generator=g) * 0.5 + 0.25)


def flat_outputs(out):
    """The output's tensors depth first: tuple, list and NamedTuple elements
    in order, dict values in key order; None (an absent optional output such
    as a scripted googlenet's aux logits) contributes nothing."""
    import torch

    if out is None:
        return []
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res += flat_outputs(o)
        return res
    if isinstance(out, dict):
        res = []
        for k in out:
            res += flat_outputs(out[k])
        return res
    raise TypeError(f"unsupported output type {type(out).__name__}")


def output_structure(out):
    """A short description of the output's nesting: "tensor", "none",
    "dict(out,aux)", "namedtuple(logits,aux_logits2,aux_logits1)",
    "tuple(tensor,tensor)", "list(...)"."""
    import torch

    if out is None:
        return "none"
    if isinstance(out, torch.Tensor):
        return "tensor"
    if isinstance(out, dict):
        return "dict(" + ",".join(str(k) for k in out) + ")"
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return "namedtuple(" + ",".join(out._fields) + ")"
    if isinstance(out, (tuple, list)):
        kind = "tuple" if isinstance(out, tuple) else "list"
        return kind + "(" + ",".join(output_structure(o) for o in out) + ")"
    raise TypeError(f"unsupported output type {type(out).__name__}")


def write_f32(path, tensors):
    with open(path, "wb") as fh:
        for t in tensors:
            fh.write(t.detach().float().contiguous().numpy().astype("<f4", copy=False).tobytes())
    return path


class Generator:
    def __init__(self, outdir):
        self.outdir = outdir
        self.fixtures = []
        self.error_fixtures = []
        self.extra_fixtures = []
        self.notes = []

    def p(self, f):
        return os.path.join(self.outdir, f)

    def run_all(self):
        import torch
        import torchvision.models as tvm

        from fixture_models import COVERAGE_MODELS, SMALL_MODELS, AuxTooSmall, NoForward, RandomOps, SmallCNN, Strided1x1, TwoInputs

        for name, cls, shape in SMALL_MODELS:
            self.one(name, cls, shape)
        for arch in ("resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "densenet121"):
            self.one(arch, lambda a=arch: getattr(tvm, a)(weights=None), [1, 3, 224, 224])
        self.no_forward(NoForward)
        for name, ctor, shape in COVERAGE_MODELS:
            self.one(name, ctor, shape, group="coverage")

        # Not TorchScript: for error tests.
        torch.manual_seed(seed_of("smallcnn"))
        m = SmallCNN()
        randomise_bn(m, seed_of("smallcnn") + 2)
        m.eval()
        torch.save(m.state_dict(), self.p("state_dict.pt"))
        self.error_fixtures.append({"name": "state_dict", "model": "state_dict.pt",
                                    "what": "torch.save(smallcnn.state_dict()), not TorchScript"})
        torch.save(m, self.p("pickled_module.pt"))
        self.error_fixtures.append({"name": "pickled_module", "model": "pickled_module.pt",
                                    "what": "torch.save(eager smallcnn nn.Module), not TorchScript"})
        self.scripted_error("two_inputs", lambda: TwoInputs().eval(),
                            "TorchScript whose forward takes two tensors (x, meta)")
        self.scripted_error("half", lambda: SmallCNN().eval().half(),
                            "TorchScript smallcnn with float16 weights")
        self.scripted_error("aux_too_small", lambda: AuxTooSmall().eval(),
                            "TorchScript whose training-only head fails at 1,3,32,32")
        # Not a model to prune: the random ops of training, one each.
        torch.manual_seed(seed_of("random_ops"))
        torch.jit.script(RandomOps()).save(self.p("random_ops.pt"))
        self.extra_fixtures.append({"name": "random_ops", "model": "random_ops.pt",
                                    "what": "TorchScript running each random op of training (torch: TestModuleRNG)"})
        torch.manual_seed(seed_of("strided_1x1"))
        torch.jit.script(Strided1x1()).save(self.p("strided_1x1.pt"))
        self.extra_fixtures.append({"name": "strided_1x1", "model": "strided_1x1.pt",
                                    "what": "TorchScript strided 1x1 conv of 5 channels (torch: TestStrided1x1Gradient)"})
        # Deployment steps that bake the weights into something surgery
        # cannot cut.
        from torch.utils.mobile_optimizer import optimize_for_mobile
        self.deployed_error("frozen", torch.jit.freeze,
                            "TorchScript smallcnn after torch.jit.freeze (weights inlined as constants)")
        self.deployed_error("mobile", optimize_for_mobile,
                            "TorchScript smallcnn after optimize_for_mobile (frozen, XNNPACK prepacked convs)")
        self.deployed_error("quantized", None,
                            "TorchScript smallcnn statically quantized (fbgemm): convs with packed int8 weights")

    def scripted_error(self, name, ctor, what):
        """Script ctor() (seeded by name) into NAME.pt, an error fixture."""
        import torch

        torch.manual_seed(seed_of(name))
        torch.jit.script(ctor()).save(self.p(name + ".pt"))
        self.error_fixtures.append({"name": name, "model": name + ".pt", "what": what})

    def deployed_error(self, name, step, what):
        """smallcnn (seeded by name) scripted and passed through a deployment
        step into NAME.pt, an error fixture; step None quantizes it
        statically (fbgemm, calibrated on seeded random inputs) first."""
        import torch
        import torch.nn as nn
        from fixture_models import SmallCNN

        torch.manual_seed(seed_of(name))
        m = SmallCNN()
        randomise_bn(m, seed_of(name) + 2)
        m.eval()
        if step is None:
            q = torch.ao.quantization
            m = nn.Sequential(q.QuantStub(), m, q.DeQuantStub()).eval()
            m.qconfig = q.get_default_qconfig("fbgemm")
            p = q.prepare(m)
            with torch.no_grad():
                p(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed_of(name) + 1)))
            torch.jit.script(q.convert(p)).save(self.p(name + ".pt"))
        else:
            step(torch.jit.script(m)).save(self.p(name + ".pt"))
        self.error_fixtures.append({"name": name, "model": name + ".pt", "what": what})

    def one(self, arch, ctor, shape, group=None):
        import torch
        import flopcount

        t0 = time.time()
        seed = seed_of(arch)
        torch.manual_seed(seed)
        model = ctor()
        randomise_bn(model, seed + 2)
        model.eval()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))
        cnt = flopcount.count(model, (x,))
        with torch.no_grad():
            eager_out = model(x)
        ref = flat_outputs(eager_out)
        # trace refuses dict outputs unless strict is off (segmentation models).
        trace_kw = {"strict": False} if isinstance(eager_out, dict) else {}

        for export in ("scripted", "traced"):
            name = f"{arch}_{export}"
            with torch.no_grad():
                if export == "scripted":
                    sm = torch.jit.script(model)
                else:
                    sm = torch.jit.trace(model, (x,), **trace_kw)
            torch.jit.save(sm, self.p(name + ".pt"))
            del sm
            loaded = torch.jit.load(self.p(name + ".pt"))
            loaded.eval()
            with torch.no_grad():
                out = loaded(x)
            outs = flat_outputs(out)
            if len(outs) != len(ref):
                raise SystemExit(f"{name}: reloaded model returns {len(outs)} tensors, eager {len(ref)}")
            for a, b in zip(outs, ref):
                err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12)
                if not err <= 1e-4:
                    raise SystemExit(f"{name}: reloaded output differs from eager (rel {err:g})")
            write_f32(self.p(name + ".in.f32"), [x])
            write_f32(self.p(name + ".out.f32"), outs)
            meta = {
                "name": name,
                "arch": arch,
                "export": export,
                "input_shape": list(shape),
                "output_shape": list(outs[0].shape),
                "output_shapes": [list(o.shape) for o in outs],
                "tuple_output": len(outs) > 1,
                "output_structure": output_structure(out),
                "dtype": "float32",
                "byte_order": "little",
                "seed": seed,
                "macs": cnt["macs"],
                "params": cnt["params"],
                "layers": cnt["layers"],
            }
            if group:
                meta["group"] = group
            with open(self.p(name + ".json"), "w") as fh:
                json.dump(meta, fh, indent=1)
                fh.write("\n")
            self.fixtures.append({
                "name": name, "arch": arch, "export": export,
                "model": name + ".pt", "input": name + ".in.f32",
                "output": name + ".out.f32", "meta": name + ".json",
                "input_shape": list(shape), "output_shape": list(outs[0].shape),
                "macs": cnt["macs"], "params": cnt["params"],
            })
            if group:
                self.fixtures[-1]["group"] = group
        print(f"  {arch:<28} macs={cnt['macs']:>13,} params={cnt['params']:>11,} "
              f"{time.time() - t0:6.1f} s", flush=True)

    def no_forward(self, NoForward):
        import torch

        name = "no_forward"
        torch.manual_seed(seed_of(name))
        m = NoForward().eval()
        try:
            sm = torch.jit.script(m)
            torch.jit.save(sm, self.p(name + ".pt"))
            loaded = torch.jit.load(self.p(name + ".pt"))
            has_fwd = loaded._c._has_method("forward")
        except Exception as e:  # pragma: no cover - depends on torch version
            self.notes.append(f"no_forward skipped: {e}")
            print(f"  no_forward      skipped: {e}")
            return
        if has_fwd:
            self.notes.append("no_forward: saved module unexpectedly has forward")
        meta = {"name": name, "arch": name, "export": "scripted", "has_forward": has_fwd,
                "methods": ["predict"], "input_shape": [1, 3, 8, 8],
                "note": "TorchScript module without forward (only an exported 'predict'); "
                        "no .in/.out sidecars"}
        with open(self.p(name + ".json"), "w") as fh:
            json.dump(meta, fh, indent=1)
            fh.write("\n")
        self.fixtures.append({"name": name, "arch": name, "export": "scripted",
                              "model": name + ".pt", "meta": name + ".json",
                              "input": None, "output": None, "has_forward": has_fwd})
        print(f"  no_forward      saved (has forward: {has_fwd})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
