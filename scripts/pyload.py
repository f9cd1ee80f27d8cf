#!/usr/bin/python3
"""Load a TorchScript model with Python torch and run it once.

Usage: /usr/bin/python3 scripts/pyload.py MODEL.pt --input-shape 1,3,224,224
           [--input IN.f32] [--output OUT.f32] [--seed 0] [--threads 2] [--train]

torch.jit.load, eval(), forward under no_grad on IN.f32 (raw little-endian
float32, C order) or on seeded torch.randn input. Prints one JSON line
{"ok": true, "output_shape": [...], "output_shapes": [[...], ...],
"structure": "dict(out: tensor, aux: tensor)"} (with --train, also
"train_ok" and "train_error") and, with
--output, writes the output as raw little-endian float32 (a tuple, list or
dict output: its tensors flattened depth-first and concatenated in order). On any failure prints
{"ok": false, "error": "..."} and a message on stderr, and exits 1.
Used by the Go tests to prove that Python loads and runs pruned models.
"""
import argparse
import json
import sys


def flat_outputs(out):
    import torch

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
    if out is None or isinstance(out, (bool, int, float, str)):
        return []
    raise TypeError(f"unsupported output type {type(out).__name__}")


def structure(out):
    """The output's type on one line, spelt as the shim's describe_output
    (cgo/output.cc) spells it: tensor, None, tuple(...), list(...),
    dict(key: ...), a NamedTuple as Name(field: ...)."""
    import torch

    if isinstance(out, torch.Tensor):
        return "tensor"
    if out is None:
        return "None"
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        inner = ", ".join(f"{f}: {structure(v)}" for f, v in zip(out._fields, out))
        return f"{type(out).__name__}({inner})"
    if isinstance(out, (tuple, list)):
        kind = "tuple" if isinstance(out, tuple) else "list"
        return f"{kind}({', '.join(structure(v) for v in out)})"
    if isinstance(out, dict):
        return "dict(" + ", ".join(f"{k}: {structure(v)}" for k, v in out.items()) + ")"
    return {bool: "bool", int: "int", float: "double", str: "string"}.get(type(out), type(out).__name__)


def run(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    shape = [int(s) for s in args.input_shape.replace("x", ",").split(",") if s.strip()]
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"bad --input-shape {args.input_shape!r}")
    if args.input:
        data = np.fromfile(args.input, dtype="<f4")
        want = int(np.prod(shape))
        if data.size != want:
            raise ValueError(f"{args.input}: {data.size} floats, input shape {shape} needs {want}")
        x = torch.from_numpy(data.astype(np.float32).reshape(shape))
    else:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(args.seed))
    m = torch.jit.load(args.model, map_location="cpu")
    m.eval()
    with torch.no_grad():
        res = m(x)
        outs = flat_outputs(res)
    if args.output:
        with open(args.output, "wb") as fh:
            for t in outs:
                fh.write(t.detach().float().contiguous().numpy().astype("<f4", copy=False).tobytes())
    out = {"ok": True, "output_shape": list(outs[0].shape) if outs else [],
           "output_shapes": [list(t.shape) for t in outs], "structure": structure(res)}
    if args.train:
        # Training mode runs what eval skips (auxiliary classifiers) and
        # BatchNorm on batch statistics, which a batch of one may refuse.
        xt = torch.randn(max(shape[0], 2), *shape[1:], generator=torch.Generator().manual_seed(args.seed + 1))
        try:
            m.train()
            ys = flat_outputs(m(xt))
            sum(y.float().sum() for y in ys).backward()
            out["train_ok"] = True
        except Exception as e:  # noqa: BLE001 - reported to the caller
            out["train_ok"] = False
            # A TorchScript error ends with the error itself, after the
            # traceback.
            lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [""]
            last = lines[-1] if lines[-1].startswith(type(e).__name__) else f"{type(e).__name__}: {lines[-1]}"
            out["train_error"] = last[:2000]
    return out


def main():
    ap = argparse.ArgumentParser(description="load a TorchScript model and run it once")
    ap.add_argument("model")
    ap.add_argument("--input-shape", required=True, help="e.g. 1,3,224,224")
    ap.add_argument("--input", help="raw little-endian float32 input file")
    ap.add_argument("--output", help="write the output here as raw float32")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random input")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", action="store_true",
                    help="also run forward and backward in training mode on a batch of at least 2 "
                         "(train_ok, train_error)")
    args = ap.parse_args()
    try:
        res = run(args)
    except Exception as e:  # noqa: BLE001 - any failure is a failed load for the caller
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        msg = " ".join(l.strip() for l in msg if l.strip())[:2000]
        print(json.dumps({"ok": False, "error": msg}))
        print(f"pyload: {args.model}: {msg}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
