#!/usr/bin/env python3
"""PyTorch CPU speed peer for one training step of SmolLM2-135M (LoRA or full fine-tuning).

RUN BY HAND ONLY (never by CI). The counterpart qsafe measures its own training step against.
Setup (same venv as make_training_fixtures.py, plus PEFT and psutil):

    python3 -m venv ~/.venvs/qsafe-torch
    ~/.venvs/qsafe-torch/bin/pip install torch transformers gguf numpy peft
    MODEL=$(scripts/fetch_model.sh)
    nice -n 5 ~/.venvs/qsafe-torch/bin/python tools/reference/torch_lora_speed.py --model "$MODEL" \
        --threads 2 --steps 3            # add --full-ft to time full fine-tuning instead

What one step is: SmolLM2-135M-Instruct loaded from the GGUF by transformers (dequantized to fp32),
LoRA rank 16, alpha 32, dropout 0 on all seven projections (q,k,v,o,gate,up,down) of all 30 blocks
through PEFT (or, if PEFT is not importable, an equivalent LoRA module of this file; the JSON says
which), a batch of 8 x 256 random token ids (torch.Generator seeded), next-token cross-entropy over
all positions (HF's shifted loss: 8 x 255 targets), backward, AdamW step (lr 1e-4), zero_grad.
fp32 throughout, PyTorch's default (SDPA) attention. One warm-up step, then --steps timed steps.

Prints one JSON object: tokens_per_second (8*256 per step / mean seconds per step), seconds_per_step
(mean and each), peak_rss_mb (ru_maxrss of this process, includes the model load), versions, cpu,
threads, the 1-minute load average before and after. Our own code.

Measured 2026-12-06 (torch 2.15.0, transformers 5.25.0, PEFT 0.21.2; Intel Xeon family 6 model 207,
Sapphire Rapids class, KVM guest, 2 vCPUs, torch CPU capability AVX512; --threads 2, nice -n 5, no other
load than these runs, one after another): LoRA 169, 257, 249, 156 tokens/s in four runs (7.4-13.7 s per
step: this shared VM varies by ~1.6x between runs); full fine-tuning 160, 161 tokens/s (~12.8 s per
step). Peak RSS ~7.2-7.5 GB either way (eager fp32 activations + 8x256x49152 logits). The whole step is
only ~1.5 cores busy on average (single-threaded stretches).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class OwnLoraLinear(nn.Module):
    """Fallback LoRA: y = base(x) + (alpha/r) (x A^T) B^T; A ~ kaiming-uniform, B = 0 (as PEFT)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=5 ** 0.5)

    def forward(self, x):
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)


def add_lora(model, r: int, alpha: float):
    try:
        import peft
        cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                              task_type="CAUSAL_LM")
        return peft.get_peft_model(model, cfg), f"PEFT {peft.__version__}"
    except ImportError:
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name in TARGETS:
                    if hasattr(parent, name):
                        setattr(parent, name, OwnLoraLinear(getattr(parent, name), r, alpha))
        return model, "own LoRA module (PEFT not importable)"


def _peft_version():
    try:
        import peft
        return peft.__version__
    except ImportError:
        return None


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        f = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return (f"{f.get('Model name', '?').strip()} (family {f.get('CPU family', '?').strip()}, "
                f"model {f.get('Model', '?').strip()}, {f.get('Hypervisor vendor', 'bare metal').strip()}, "
                f"{os.cpu_count()} CPUs)")
    except Exception:  # pragma: no cover
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(Path.home() / ".cache/qsafe/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--full-ft", action="store_true", help="train every parameter instead of LoRA")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    path = Path(args.model)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    load_s = time.perf_counter() - t0
    if args.full_ft:
        for p in model.parameters():
            p.requires_grad_(True)
        lora_impl = None
    else:
        model, lora_impl = add_lora(model, args.rank, args.alpha)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr)

    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)

    def step() -> tuple[float, float]:
        t = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t, out.loss.item()

    warm, loss0 = step()
    times, losses = [], []
    for _ in range(args.steps):
        s, l = step()
        times.append(s)
        losses.append(l)
    mean = sum(times) / len(times)
    import numpy
    res = {
        "mode": "full fine-tuning" if args.full_ft else f"LoRA r={args.rank} alpha={args.alpha:g} dropout 0, "
                                                          f"all 7 projections x 30 blocks",
        "lora_impl": lora_impl,
        "trainable_params": n_train,
        "batch": [args.batch, args.seq],
        "tokens_per_step": args.batch * args.seq,
        "tokens_per_second": args.batch * args.seq / mean,
        "seconds_per_step": mean,
        "seconds_each_step": times,
        "warmup_seconds": warm,
        "losses": [loss0] + losses,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "model_load_seconds": load_s,
        "threads": torch.get_num_threads(),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "optimizer": f"torch.optim.AdamW lr={args.lr:g} (defaults otherwise)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": numpy.__version__, "python": platform.python_version(),
                     "peft": _peft_version(),
                     "torch_parallel_backend": [ln.strip() for ln in torch.__config__.parallel_info().splitlines()
                                                if "OpenMP" in ln or "MKL" in ln]},
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
