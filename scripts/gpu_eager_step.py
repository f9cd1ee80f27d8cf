"""The PyTorch side of scripts/gpu_check.sh: a resnet18 training step at
batch 64, 224x224, written the way a careful PyTorch user writes it (eager
module, channels-last model and batch, cudnn.benchmark, the batch in pinned
host memory copied with non_blocking, zero_grad(set_to_none=True), autocast
with a GradScaler for fp16, loss.item() every step), timed per step from the
copy to the loss on the host. `bench-model --train` times gopruner's step on
the same architecture and batch; the check reports the ratio.

  python3 scripts/gpu_eager_step.py --save-scripted r18.pt   # the model for gopruner
  python3 scripts/gpu_eager_step.py --amp bf16 [--scripted r18.pt]
"""
import argparse
import json
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--scripted", help="time this TorchScript file instead of the eager module")
    ap.add_argument("--save-scripted", help="write the scripted resnet18 (seed 0) here and stop")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.save_scripted:
        torch.jit.script(torchvision.models.resnet18().eval()).save(a.save_scripted)
        return
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = torch.jit.load(a.scripted) if a.scripted else torchvision.models.resnet18()
    model = model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=a.amp == "fp16")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).pin_memory()
    y = torch.randint(0, 1000, (a.batch,), generator=g).pin_memory()

    def step():
        xd = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yd = y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(xd)
            loss = torch.nn.functional.cross_entropy(out, yd)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    ms = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"loop": "pytorch-scripted" if a.scripted else "pytorch-eager", "amp": a.amp,
                      "batch": a.batch, "steps": a.steps, "median_ms": statistics.median(ms),
                      "min_ms": min(ms), "mean_ms": statistics.fmean(ms),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
