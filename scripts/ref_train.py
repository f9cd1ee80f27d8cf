#!/usr/bin/python3
"""Plain PyTorch reference training loop for gopruner's benchmarks.

Usage:
  /usr/bin/python3 scripts/ref_train.py --dataset DIR --model M.pt --input-shape 1,1,28,28
      [--epochs 1] [--batch-size 64] [--lr 0.05] [--momentum 0.9] [--threads 2]
      [--mean 0.5] [--std 0.5] [--seed 0] [--device cpu] [--json]

Dataset: DIR/data.csv with a header naming a path column (path, file, filename,
image), a label column (label, class, target) and optionally a split column
(train/val/test); paths are relative to DIR; labels are integers or names (names
map to indices in sorted order). Without data.csv: ImageFolder layout
DIR/<class>/*.png|jpg (all train; val = the same images). Without a split column
every row is trained on and validated on.

Images are decoded with PIL, converted to the model's channel count (L or RGB),
resized bilinearly to the input H×W, scaled to [0,1] and normalised with
(x - mean) / std (one value or one per channel). Decoding happens once, before
timing. The TorchScript model is loaded with torch.jit.load, put in train(),
trained with SGD(lr, momentum) and cross-entropy on the train split for N epochs
(shuffled with a seeded generator; the last batch may be short), then evaluated
(eval(), no_grad) on the val split.

Prints one JSON line on stdout:
  {"train_images_per_s", "wall_s", "val_accuracy", "samples", ...}
where samples = training images processed (epochs × train size),
train_images_per_s = samples / train_s (training steps only), wall_s = whole run
including load/decode. Without --json, progress goes to stderr as well.
"""
import argparse
import csv
import json
import os
import sys
import time

PATH_COLS = ("path", "file", "filename", "image")
LABEL_COLS = ("label", "class", "target")
IMG_EXT = (".png", ".jpg", ".jpeg")


def floats(s):
    return [float(v) for v in str(s).split(",") if v.strip()]


def read_index(root):
    """Return [(abs_path, label_str, split)]."""
    csv_path = os.path.join(root, "data.csv")
    rows = []
    if os.path.isfile(csv_path):
        with open(csv_path, newline="") as fh:
            rd = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in (rd.fieldnames or [])}
            pc = next((cols[c] for c in PATH_COLS if c in cols), None)
            lc = next((cols[c] for c in LABEL_COLS if c in cols), None)
            sc = cols.get("split")
            if pc is None or lc is None:
                raise SystemExit(f"ref_train: {csv_path}: header needs a path column "
                                 f"{PATH_COLS} and a label column {LABEL_COLS}")
            for r in rd:
                split = (r[sc].strip().lower() if sc else "") or ""
                rows.append((os.path.join(root, r[pc].strip()), r[lc].strip(), split))
    else:
        for cls in sorted(os.listdir(root)):
            d = os.path.join(root, cls)
            if not os.path.isdir(d):
                continue
            for f in sorted(os.listdir(d)):
                if f.lower().endswith(IMG_EXT):
                    rows.append((os.path.join(d, f), cls, ""))
    if not rows:
        raise SystemExit(f"ref_train: {root}: no samples")
    return rows


def label_map(labels):
    try:
        return {l: int(l) for l in labels}
    except ValueError:
        return {l: i for i, l in enumerate(sorted(set(labels)))}


def load_images(rows, c, h, w, mean, std):
    import numpy as np
    import torch
    from PIL import Image

    mode = "L" if c == 1 else "RGB"
    if c not in (1, 3):
        raise SystemExit(f"ref_train: model input has {c} channels; only 1 or 3 supported")
    arr = np.empty((len(rows), h, w, c), dtype=np.uint8)
    for i, path in enumerate(rows):
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        arr[i] = a.reshape(h, w, c)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    m = torch.tensor(mean if len(mean) == c else mean * c, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.tensor(std if len(std) == c else std * c, dtype=torch.float32).view(1, c, 1, 1)
    return (x - m) / s


def first_tensor(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def main():
    ap = argparse.ArgumentParser(description="plain PyTorch reference training loop")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input-shape", required=True, help="N,C,H,W (N is ignored)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mean", default="0.5")
    ap.add_argument("--std", default="0.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="only the JSON line, no progress")
    ap.add_argument("--order", help="JSON file: one list of train image paths per epoch, in batch "
                    "order (the order gopruner used), instead of a seeded shuffle; a tail shorter "
                    "than a batch is not trained on, as in gopruner")
    args = ap.parse_args()

    t_start = time.time()
    import torch
    import torch.nn.functional as F

    def log(msg):
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = [int(v) for v in args.input_shape.replace("x", ",").split(",") if v.strip()]
    if len(shape) != 4:
        raise SystemExit(f"ref_train: --input-shape must be N,C,H,W, got {args.input_shape!r}")
    _, c, h, w = shape
    mean, std = floats(args.mean), floats(args.std)

    rows = read_index(args.dataset)
    lmap = label_map([r[1] for r in rows])
    has_split = any(r[2] for r in rows)
    train_rows = [r for r in rows if r[2] == "train"] if has_split else rows
    val_rows = [r for r in rows if r[2] == "val"] if has_split else rows
    if not train_rows:
        raise SystemExit(f"ref_train: {args.dataset}: no train samples")

    t0 = time.time()
    xtr = load_images([r[0] for r in train_rows], c, h, w, mean, std)
    ytr = torch.tensor([lmap[r[1]] for r in train_rows], dtype=torch.long)
    xva = load_images([r[0] for r in val_rows], c, h, w, mean, std) if val_rows else None
    yva = torch.tensor([lmap[r[1]] for r in val_rows], dtype=torch.long) if val_rows else None
    decode_s = time.time() - t0
    log(f"decoded {len(train_rows)} train + {len(val_rows)} val images in {decode_s:.2f} s")

    dev = torch.device(args.device)
    model = torch.jit.load(args.model, map_location=dev)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    n = xtr.shape[0]
    samples = 0
    last_loss = float("nan")  # mean training loss of the last epoch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    sync()
    t0 = time.time()
    orders = None
    if args.order:
        with open(args.order) as f:
            norm = lambda p: os.path.normpath(os.path.abspath(p))
            by_path = {norm(r[0]): i for i, r in enumerate(train_rows)}
            orders = [torch.tensor([by_path[norm(p)] for p in ep], dtype=torch.long) for ep in json.load(f)]
    for ep in range(args.epochs):
        perm = orders[ep] if orders is not None else torch.randperm(n, generator=gen)
        loss_sum, steps = torch.zeros((), device=dev), 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            if orders is not None and idx.numel() < args.batch_size:
                break
            xb, yb = xtr[idx].to(dev), ytr[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(first_tensor(model(xb)), yb)
            loss.backward()
            opt.step()
            samples += idx.numel()
            steps += 1
            loss_sum += loss.detach()
        last_loss = float(loss_sum) / steps
        log(f"epoch {ep + 1}/{args.epochs}: mean loss {last_loss:.4f}")
    sync()
    train_s = time.time() - t0

    t0 = time.time()
    acc = None
    if xva is not None:
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, xva.shape[0], args.batch_size):
                out = first_tensor(model(xva[i:i + args.batch_size].to(dev)))
                correct += int((out.argmax(1).cpu() == yva[i:i + args.batch_size]).sum())
        acc = correct / xva.shape[0]
    eval_s = time.time() - t0

    res = {
        "train_images_per_s": samples / train_s if train_s > 0 else None,
        "wall_s": time.time() - t_start,
        "val_accuracy": acc,
        "samples": samples,
        "train_size": len(train_rows),
        "val_size": len(val_rows),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": str(dev),
        "decode_s": decode_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "last_epoch_loss": last_loss if last_loss == last_loss else None,
        "torch_version": torch.__version__,
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        msg = " ".join(str(e).split())[:1000]
        print(f"ref_train: {type(e).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)
