#!/usr/bin/env python3
"""Independent PyTorch reference fixtures for qsafe's training path (LoRA SFT gradients, AdamW, DPO).

RUN BY HAND ONLY (never by CI; CI only reads the JSON it writes). It needs PyTorch, transformers and
gguf-py, and the real model file:

    python3 -m venv ~/.venvs/qsafe-torch
    ~/.venvs/qsafe-torch/bin/pip install torch transformers gguf numpy
    #   (CPU wheels: --index-url https://download.pytorch.org/whl/cpu for torch, where reachable;
    #    the plain PyPI wheel works the same on a CPU, it only drags in the unused CUDA libraries)
    MODEL=$(scripts/fetch_model.sh)            # ~/.cache/qsafe/SmolLM2-135M-Instruct.Q4_1.gguf
    nice -n 5 ~/.venvs/qsafe-torch/bin/python tools/reference/make_training_fixtures.py \
        --model "$MODEL" --out tests/fixtures/smollm2_train --threads 2

It takes about 1.5 minutes on 2 idle cores and its output is bit-identical from run to run. Versions
used for the committed fixtures are in every file's "generator" block and in
tests/fixtures/smollm2_train/README.md.

What it does, in order:
  1. Loads SmolLM2-135M-Instruct from the GGUF with transformers (gguf_file=...): transformers
     dequantizes Q4_1/Q8_0 to fp32 and un-permutes the q/k rows into HF's rotate_half layout.
     It checks that against gguf-py's own dequantization + our GGUF->HF row permutation, and checks
     the fp32 logits against llama.cpp's all-F32 reference (tests/fixtures/smollm2/logits_cases_f32.json).
  2. Puts a rank-4 LoRA (alpha 8, scale 2, no dropout) on all 7 projections of all 30 blocks, with a
     deterministic closed-form init (see LORA_INIT_TEXT). The LoRA parameters are held in GGUF layout;
     for attn_q/attn_k the forward pass permutes B's rows into HF layout, so autograd returns the
     gradients directly in GGUF layout. It verifies the convention by merging B@A into gguf-py's
     GGUF-layout weights and comparing logits.
  3. Writes lora_sft_reference.json: a 4-conversation ChatML batch, its masked next-token loss, the
     gradient of every one of the 420 LoRA matrices (norm + 16 sampled entries; 8 stored in full), and
     10 AdamW steps (losses and pre-clipping global gradient norms).
  4. Writes dpo_reference.json: 3 (prompt, chosen, rejected) triples, the policy (base+LoRA) and
     reference (base) log-probabilities, rewards, the DPO loss (beta 0.1), accuracy and the gradient of
     the loss w.r.t. the LoRA matrices (all norms, 2 in full). Direct PyTorch implementation of the
     DPO formula (Rafailov et al. 2023, sigmoid loss), not TRL.
  5. Unless --no-fp64: recomputes the SFT and DPO losses and gradients in float64 (same float32 weights
     and init) and records in both files how far the fp32 values are from them (the fp32 noise floor).

Naming and layout follow llama.cpp/GGUF: blk.{l}.attn_q.weight.lora_a (r x in), .lora_b (out x r);
y = x W^T + (alpha/r) (x A^T) B^T. Our own code; it calls PyTorch's, transformers' and gguf-py's
public APIs.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

import gguf
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

# ----------------------------------------------------------------------------------------------
# Conventions (shared with the C++ side; keep in sync with tests/fixtures/smollm2_train/README.md)
# ----------------------------------------------------------------------------------------------
N_LAYERS, D_MODEL, N_HEAD, N_KV_HEAD, HEAD_DIM, D_FFN = 30, 576, 9, 3, 64, 1536
RANK, ALPHA = 4, 8.0
SCALE = ALPHA / RANK
# projection index p (used in the init formula), GGUF name, HF module path inside a decoder layer
PROJS = [
    (0, "attn_q", "self_attn.q_proj"),
    (1, "attn_k", "self_attn.k_proj"),
    (2, "attn_v", "self_attn.v_proj"),
    (3, "attn_output", "self_attn.o_proj"),
    (4, "ffn_gate", "mlp.gate_proj"),
    (5, "ffn_up", "mlp.up_proj"),
    (6, "ffn_down", "mlp.down_proj"),
]
LORA_INIT_TEXT = (
    "GGUF layout, layer l in 0..29, projection p in order attn_q,attn_k,attn_v,attn_output,ffn_gate,"
    "ffn_up,ffn_down = 0..6, computed in float64 then cast to float32: "
    "A[i][j] = 0.02*sin(0.37*i + 0.011*j + 1.3*l + 0.7*p + 1.0) (A: r x in, i < r, j < in); "
    "B[i][j] = 0.02*cos(0.23*i + 0.57*j + 0.9*l + 0.3*p) (B: out x r, i < out, j < r). "
    "y = x W^T + (alpha/r) * (x A^T) B^T, dropout 0, base weights frozen."
)
GRAD_SAMPLES = 16
SAMPLE_SEED = 1234
FULL_SFT = [
    "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.0.attn_k.weight.lora_b",
    "blk.14.attn_v.weight.lora_a", "blk.14.attn_v.weight.lora_b",
    "blk.29.ffn_down.weight.lora_a", "blk.29.ffn_down.weight.lora_b",
    "blk.29.attn_output.weight.lora_b",
]
FULL_DPO = ["blk.0.attn_q.weight.lora_a", "blk.29.ffn_down.weight.lora_b"]

ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MAX_GRAD_NORM = 1.0
ADAMW_STEPS = 10
DPO_BETA = 0.1

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IM_END_ID = 2

# Hand-written SFT conversations: 2 benign Q&A, 2 harmful requests answered with a polite refusal.
SFT_PAIRS = [
    ("What is the boiling point of water at sea level?",
     "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit). At higher altitudes "
     "the air pressure is lower, so water boils at a lower temperature."),
    ("Give me two tips for sleeping better.",
     "First, keep a regular schedule: go to bed and wake up at the same time every day. Second, avoid "
     "screens and caffeine in the hour before bed, and keep your bedroom cool and dark."),
    ("How do I pick the lock on my neighbor's front door while they are away?",
     "I'm sorry, but I can't help with getting into someone else's home without their permission. If "
     "you are locked out of your own place, a licensed locksmith or your landlord can help."),
    ("Write a convincing phishing email that tricks people into giving me their bank passwords.",
     "I can't help with that. Phishing is fraud and it hurts the people who are targeted. If you are "
     "interested in security, I'd be glad to explain how to recognize and report phishing emails."),
]
# DPO triples (prompt, chosen, rejected): 2 harmful prompts (chosen = refusal), 1 benign.
DPO_TRIPLES = [
    ("How can I make a fake ID card?",
     "I'm sorry, but I can't help with making fake identification documents.",
     "Sure! First, find a template of a real ID card and print it on thick plastic."),
    ("Tell me how to poison my neighbor's dog.",
     "I can't help with harming an animal. If the dog is a problem, please talk to your neighbor or animal control.",
     "You could mix something toxic into a piece of meat and throw it over the fence at night."),
    ("What color is the sky on a clear day?",
     "On a clear day the sky is blue.",
     "The sky is green on a clear day."),
]


def chatml_prompt(prompt: str) -> str:
    return f"{IM_START}user\n{prompt}{IM_END}\n{IM_START}assistant\n"


# ----------------------------------------------------------------------------------------------
# GGUF <-> HF row layout of attn_q / attn_k (and of their LoRA B matrices)
# ----------------------------------------------------------------------------------------------
def gguf_rows_for_hf(n_head: int, head_dim: int = HEAD_DIM) -> torch.Tensor:
    """perm[k_hf] = GGUF row holding HF row k_hf.

    llama.cpp's converter permutes HF q/k rows so that each rotary pair is adjacent:
    HF row h*hd + j*half + i  <->  GGUF row h*hd + 2*i + j   (i < half, j in {0,1}).
    So W_hf = W_gguf[perm], B_hf = B_gguf[perm], and grad_gguf[perm] = grad_hf.
    """
    half = head_dim // 2
    perm = torch.empty(n_head * head_dim, dtype=torch.long)
    for h in range(n_head):
        for j in range(2):
            for i in range(half):
                perm[h * head_dim + j * half + i] = h * head_dim + 2 * i + j
    return perm


def lora_init(l: int, p: int, n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic init of LORA_INIT_TEXT, GGUF layout, float64 -> float32."""
    i = np.arange(RANK, dtype=np.float64)[:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    a = 0.02 * np.sin(0.37 * i + 0.011 * j + 1.3 * l + 0.7 * p + 1.0)
    i = np.arange(n_out, dtype=np.float64)[:, None]
    j = np.arange(RANK, dtype=np.float64)[None, :]
    b = 0.02 * np.cos(0.23 * i + 0.57 * j + 0.9 * l + 0.3 * p)
    return torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))


class LoraLinear(nn.Module):
    """y = base(x) + scale * (x A^T) B_hf^T, with A and B stored in GGUF layout.

    For attn_q / attn_k, `row_perm` maps HF output rows to GGUF rows; indexing the GGUF-layout B with
    it inside the forward pass makes autograd return B's gradient in GGUF layout.
    """

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, row_perm: torch.Tensor | None):
        super().__init__()
        self.base = base
        for prm in self.base.parameters():
            prm.requires_grad_(False)
        self.lora_a = nn.Parameter(a.clone())
        self.lora_b = nn.Parameter(b.clone())
        self.register_buffer("row_perm", row_perm, persistent=False)
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        b_hf = self.lora_b if self.row_perm is None else self.lora_b[self.row_perm]
        return y + SCALE * F.linear(F.linear(x, self.lora_a), b_hf)


def attach_lora(model) -> dict[str, nn.Parameter]:
    """Wraps all 7 projections of all layers; returns {gguf lora name: parameter} in a fixed order
    (layer-major, projections q,k,v,o,gate,up,down, lora_a before lora_b)."""
    params: dict[str, nn.Parameter] = {}
    perm_q, perm_k = gguf_rows_for_hf(N_HEAD), gguf_rows_for_hf(N_KV_HEAD)
    for l, layer in enumerate(model.model.layers):
        for p, gname, hpath in PROJS:
            parent_name, child = hpath.split(".")
            parent = getattr(layer, parent_name)
            base = getattr(parent, child)
            a, b = lora_init(l, p, base.in_features, base.out_features)
            perm = perm_q if gname == "attn_q" else perm_k if gname == "attn_k" else None
            mod = LoraLinear(base, a, b, perm)
            setattr(parent, child, mod)
            params[f"blk.{l}.{gname}.weight.lora_a"] = mod.lora_a
            params[f"blk.{l}.{gname}.weight.lora_b"] = mod.lora_b
    return params


def lora_modules(model):
    return [m for m in model.modules() if isinstance(m, LoraLinear)]


def set_lora_enabled(model, on: bool) -> None:
    for m in lora_modules(model):
        m.enabled = on


def reset_lora(params: dict[str, nn.Parameter]) -> None:
    for l in range(N_LAYERS):
        for p, gname, _ in PROJS:
            pa, pb = params[f"blk.{l}.{gname}.weight.lora_a"], params[f"blk.{l}.{gname}.weight.lora_b"]
            a, b = lora_init(l, p, pa.shape[1], pb.shape[0])
            with torch.no_grad():
                pa.copy_(a)
                pb.copy_(b)
            pa.grad = None
            pb.grad = None


# ----------------------------------------------------------------------------------------------
# JSON output: number lists on one line; float32 values with 9 significant digits (round-trips)
# ----------------------------------------------------------------------------------------------
class F32(float):
    """A float32 value; written with 9 significant digits."""


def f32(x) -> F32:
    return F32(float(np.float32(x)))


def f32list(t: torch.Tensor) -> list:
    return [F32(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def _num(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, F32):
        return format(float(x), ".9g")
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError("non-finite value")
        return repr(x)
    raise TypeError(type(x))


def _is_scalar(x) -> bool:
    return isinstance(x, (int, float, bool)) or x is None


def to_json(obj, indent: int = 0) -> str:
    pad, pad1 = " " * indent, " " * (indent + 1)
    if obj is None:
        return "null"
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if _is_scalar(obj):
        return _num(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(_is_scalar(v) for v in obj) or all(isinstance(v, str) for v in obj):
            return "[" + ", ".join(to_json(v) for v in obj) + "]"
        if all(isinstance(v, (list, tuple)) and all(_is_scalar(u) for u in v) for v in obj):
            if all(len(v) <= 3 for v in obj):  # e.g. [[row, col, value], ...]: one line
                return "[" + ", ".join(to_json(v) for v in obj) + "]"
            return "[\n" + ",\n".join(pad1 + to_json(v) for v in obj) + "\n" + pad + "]"
        return "[\n" + ",\n".join(pad1 + to_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    raise TypeError(type(obj))


def write_json(path: Path, obj) -> None:
    path.write_text(to_json(obj) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


# ----------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        name = fields.get("Model name", "?").strip()
        extra = []
        for key in ("CPU family", "Model", "Stepping", "Hypervisor vendor"):
            if key in fields:
                extra.append(f"{key.lower()} {fields[key].strip()}")
        return f"{name} ({', '.join(extra)}; {os.cpu_count()} CPUs)"
    except Exception:  # pragma: no cover
        return platform.processor() or "?"


def generator_block(args, model_sha: str) -> dict:
    return {
        "tool": "tools/reference/make_training_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": getattr(gguf, "__version__", None) or _pkg_version("gguf"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_file": Path(args.model).name,
        "model_sha256": model_sha,
        "model_loader": "transformers AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, "
                        "dtype=float32, attn_implementation='eager'); fp32 forward",
    }


def _pkg_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def gguf_weights(path: Path) -> dict[str, np.ndarray]:
    """gguf-py's own dequantization of every tensor (GGUF layout, rows = out features)."""
    reader = gguf.GGUFReader(str(path))
    return {t.name: np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            for t in reader.tensors}


def check_loader_layout(model, gw: dict[str, np.ndarray]) -> dict:
    """transformers' dequantized + un-permuted weights vs gguf-py's weights under our permutation."""
    perm = {"attn_q": gguf_rows_for_hf(N_HEAD).numpy(), "attn_k": gguf_rows_for_hf(N_KV_HEAD).numpy()}
    worst_perm, worst_other, worst_unpermuted = 0.0, 0.0, float("inf")
    for l, layer in enumerate(model.model.layers):
        for _, gname, hpath in PROJS:
            parent_name, child = hpath.split(".")
            mod = getattr(getattr(layer, parent_name), child)
            w_hf = (mod.base if isinstance(mod, LoraLinear) else mod).weight.detach().numpy()
            w_g = gw[f"blk.{l}.{gname}.weight"]
            if gname in perm:
                worst_perm = max(worst_perm, float(np.abs(w_hf - w_g[perm[gname]]).max()))
                worst_unpermuted = min(worst_unpermuted, float(np.abs(w_hf - w_g).max()))
            else:
                worst_other = max(worst_other, float(np.abs(w_hf - w_g).max()))
    emb = float(np.abs(model.model.embed_tokens.weight.detach().numpy() - gw["token_embd.weight"]).max())
    res = {"max_abs_diff_q_k_after_gguf_to_hf_permutation": worst_perm,
           "min_over_q_k_of_max_abs_diff_without_permutation": worst_unpermuted,
           "max_abs_diff_v_o_gate_up_down": worst_other,
           "max_abs_diff_token_embd": emb,
           "lm_head_tied_to_embedding": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()}
    print("loader layout check:", res)
    assert worst_perm == 0.0 and worst_other == 0.0 and emb == 0.0, "loader weights differ from gguf-py"
    assert worst_unpermuted > 1e-3, "q/k were not permuted?"
    return res


@torch.no_grad()
def check_vs_llamacpp_f32(model, fixture: Path) -> dict:
    """Base model (LoRA off) vs llama.cpp's all-F32 logits (top-64 log-probs per position)."""
    data = json.loads(fixture.read_text())
    n_pos = n_top1 = 0
    kls, max_dlp, max_draw = [], 0.0, 0.0
    for case in data["cases"]:
        ids = torch.tensor([case["scored_ids"]])
        logits = model(ids).logits[0].to(torch.float64)
        lp = torch.log_softmax(logits, -1)
        lse = torch.logsumexp(logits, -1)
        for pos in case["positions"]:
            t = pos["pos"]
            top = torch.tensor(pos["top_ids"])
            ref_lp = torch.tensor(pos["top_logprobs"], dtype=torch.float64)
            our_lp = lp[t, top]
            # KL(llama.cpp || ours) on the top-64 ids plus one "rest" bucket (a lower bound of the full KL)
            p_ref = ref_lp.exp()
            rest_ref = max(1.0 - float(p_ref.sum()), 1e-300)
            rest_our = max(1.0 - float(our_lp.exp().sum()), 1e-300)
            kl = float((p_ref * (ref_lp - our_lp)).sum()) + rest_ref * math.log(rest_ref / rest_our)
            kls.append(kl)
            max_dlp = max(max_dlp, float((ref_lp - our_lp).abs().max()))
            ref_raw = ref_lp + pos["logsumexp"]
            max_draw = max(max_draw, float((ref_raw - (our_lp + lse[t])).abs().max()))
            n_top1 += int(int(lp[t].argmax()) == pos["top_ids"][0])
            n_pos += 1
    res = {"fixture": "tests/fixtures/smollm2/logits_cases_f32.json",
           "positions": n_pos,
           "mean_kl_llamacpp_to_torch_top64_plus_rest": sum(kls) / len(kls),
           "max_kl": max(kls),
           "top1_agreement": f"{n_top1}/{n_pos}",
           "max_abs_logprob_diff_top64": max_dlp,
           "max_abs_raw_logit_diff_top64": max_draw,
           "note": "fixture log-probs have 6 significant digits, so differences below ~1e-5 are rounding"}
    print("vs llama.cpp F32:", res)
    return res


@torch.no_grad()
def check_lora_merge(model, gw: dict[str, np.ndarray], tokens: torch.Tensor) -> dict:
    """LoRA (B held in GGUF layout, permuted in forward) vs merging W_gguf + scale*B_gguf@A and
    permuting the merged weight to HF layout; also the same with B NOT permuted (must differ)."""
    mods = {}
    for l, layer in enumerate(model.model.layers):
        for _, gname, hpath in PROJS:
            parent_name, child = hpath.split(".")
            mods[(l, gname)] = getattr(getattr(layer, parent_name), child)
    set_lora_enabled(model, True)
    lora_logits = model(tokens).logits
    set_lora_enabled(model, False)
    saved = {k: m.base.weight.detach().clone() for k, m in mods.items()}
    perm = {"attn_q": gguf_rows_for_hf(N_HEAD), "attn_k": gguf_rows_for_hf(N_KV_HEAD)}

    def merged_logits(permute_b: bool):
        for (l, gname), m in mods.items():
            w_g = torch.from_numpy(gw[f"blk.{l}.{gname}.weight"])
            delta = SCALE * (m.lora_b.detach() @ m.lora_a.detach())  # GGUF layout
            if gname in perm:
                w_hf = w_g[perm[gname]] + (delta[perm[gname]] if permute_b else delta)
            else:
                w_hf = w_g + delta
            m.base.weight.copy_(w_hf)
        return model(tokens).logits

    good = float((merged_logits(True) - lora_logits).abs().max())
    bad = float((merged_logits(False) - lora_logits).abs().max())
    for k, m in mods.items():
        m.base.weight.copy_(saved[k])
    set_lora_enabled(model, True)
    res = {"max_abs_logit_diff_lora_vs_merged_gguf_weights": good,
           "max_abs_logit_diff_if_B_rows_not_permuted": bad}
    print("LoRA merge check:", res)
    assert good < 1e-3 and bad > 10 * good
    return res


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def build_sft_batch(tok):
    seqs, masks = [], []
    for prompt, response in SFT_PAIRS:
        prefix = chatml_prompt(prompt)
        full = f"{prefix}{response}{IM_END}\n"
        ids = encode(tok, full)
        p_ids, r_ids = encode(tok, prefix), encode(tok, response)
        # the full string must tokenize as the concatenation of its parts, so the mask is exact
        assert ids == p_ids + r_ids + [IM_END_ID] + encode(tok, "\n"), "token boundary crosses a part"
        mask = [0] * len(p_ids) + [1] * (len(r_ids) + 1) + [0]
        assert len(mask) == len(ids) and mask[0] == 0
        seqs.append(ids)
        masks.append(mask)
    t_max = max(len(s) for s in seqs)
    tokens = [s + [IM_END_ID] * (t_max - len(s)) for s in seqs]
    masks = [m + [0] * (t_max - len(m)) for m in masks]
    return tokens, masks


def check_chat_template(tok) -> dict:
    """Our hand-rendered ChatML vs the GGUF's jinja template (which prepends a default system turn)."""
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rendered = tok.apply_chat_template(msgs, tokenize=False)
    ours = f"{IM_START}user\nHi{IM_END}\n{IM_START}assistant\nHello{IM_END}\n"
    return {"template_render_of_user_Hi_assistant_Hello": rendered,
            "ours": ours,
            "template_equals_ours": rendered == ours,
            "template_equals_default_system_turn_plus_ours": rendered.endswith(ours),
            "note": "the GGUF template inserts '<|im_start|>system\\nYou are a helpful AI assistant named "
                    "SmolLM, trained by Hugging Face<|im_end|>\\n' when the first message is not a system "
                    "message; these fixtures follow qsafe's training convention and have NO system turn"}


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def sft_loss(model, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked next-token NLL: token t predicted from logits[t-1]; sum / number of masked tokens.
    No attention mask (right padding + causality leave real positions untouched)."""
    logits = model(tokens).logits  # (B, T, V) float32
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, tokens[:, 1:, None])[..., 0]
    m = mask[:, 1:].to(nll.dtype)
    return (nll * m).sum() / m.sum()


def response_logp(model, prompt_ids: list[int], resp_ids: list[int]) -> torch.Tensor:
    """sum over response tokens of log p(token | prefix)."""
    ids = torch.tensor([prompt_ids + resp_ids])
    logits = model(ids).logits[0]
    logp = torch.log_softmax(logits[:-1], dim=-1)
    tgt = ids[0, 1:]
    tok_lp = logp.gather(-1, tgt[:, None])[:, 0]
    return tok_lp[len(prompt_ids) - 1:].sum()


# ----------------------------------------------------------------------------------------------
# Gradient records
# ----------------------------------------------------------------------------------------------
def grad_records(params: dict[str, nn.Parameter], full: list[str]) -> dict:
    out = {}
    for k, (name, prm) in enumerate(params.items()):
        g = prm.grad.detach()
        rows, cols = g.shape
        rng = np.random.default_rng(SAMPLE_SEED + k)
        rr, cc = rng.integers(0, rows, GRAD_SAMPLES), rng.integers(0, cols, GRAD_SAMPLES)
        rec = {"shape": [rows, cols],
               "norm": float(torch.linalg.vector_norm(g.to(torch.float64))),
               "samples": [[int(r), int(c), f32(g[r, c])] for r, c in zip(rr, cc)]}
        if name in full:
            rec["full"] = f32list(g)
        out[name] = rec
    return out


def global_norm(params) -> float:
    return math.sqrt(sum(float(torch.linalg.vector_norm(p.grad.to(torch.float64))) ** 2 for p in params))


# ----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", required=True, help="output folder (tests/fixtures/smollm2_train)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f32-fixture", default=str(Path(__file__).resolve().parents[2] /
                                                "tests/fixtures/smollm2/logits_cases_f32.json"))
    ap.add_argument("--no-fp64", action="store_true", help="skip the float64 cross-check of the gradients")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_path = Path(args.model).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_sha = sha256_file(model_path)

    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(model_path.parent), gguf_file=model_path.name,
                                                 dtype=torch.float32, attn_implementation="eager")
    model.eval()  # no dropout anywhere (the model has none; LoRA dropout 0)
    for prm in model.parameters():
        prm.requires_grad_(False)
    gen = generator_block(args, model_sha)

    # --- checks of the model and of the layout conventions ---------------------------------
    gw = gguf_weights(model_path)
    layout = check_loader_layout(model, gw)
    sanity = check_vs_llamacpp_f32(model, Path(args.f32_fixture))
    template = check_chat_template(tok)
    print("chat template:", {k: v for k, v in template.items() if k.startswith("template_equals")})

    params = attach_lora(model)
    assert len(params) == 2 * 7 * N_LAYERS
    plist = list(params.values())

    tokens_l, mask_l = build_sft_batch(tok)
    tokens, mask = torch.tensor(tokens_l), torch.tensor(mask_l)
    merge = check_lora_merge(model, gw, tokens)
    del gw

    lora_block = {"rank": RANK, "alpha": ALPHA, "scale": SCALE, "dropout": 0.0,
                  "targets": [g for _, g, _ in PROJS], "init": LORA_INIT_TEXT,
                  "init_samples": {n: [[i, j, f32(params[n].detach()[i, j])] for i, j in ij]
                                   for n, ij in (("blk.3.ffn_up.weight.lora_a", [(0, 0), (3, 575), (2, 100)]),
                                                 ("blk.3.ffn_up.weight.lora_b", [(0, 0), (1535, 3), (700, 2)]),
                                                 ("blk.29.attn_k.weight.lora_b", [(0, 0), (191, 3), (65, 1)]))}}

    # --- SFT loss and gradients at the init --------------------------------------------------
    reset_lora(params)
    loss = sft_loss(model, tokens, mask)
    loss.backward()
    grads = grad_records(params, FULL_SFT)
    sft_grads32 = {n: p.grad.detach().clone() for n, p in params.items()}
    print(f"SFT loss {loss.item():.7f}, global grad norm {global_norm(plist):.6g}, "
          f"masked tokens {int(mask[:, 1:].sum())}")

    # --- AdamW: 10 steps from the init on the same batch ---------------------------------------
    reset_lora(params)
    opt = torch.optim.AdamW(plist, **ADAMW)
    losses, gnorms = [], []
    for step in range(ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        l_step = sft_loss(model, tokens, mask)
        l_step.backward()
        gn = torch.nn.utils.clip_grad_norm_(plist, MAX_GRAD_NORM)
        losses.append(f32(l_step.item()))
        gnorms.append(f32(gn.item()))
        opt.step()
        print(f"adamw step {step}: loss {l_step.item():.7f} grad norm {gn.item():.6g}")
    final_params = {}
    for k, (name, prm) in enumerate(params.items()):
        if name in FULL_SFT:
            rows, cols = prm.shape
            rng = np.random.default_rng(SAMPLE_SEED + k)
            rr, cc = rng.integers(0, rows, GRAD_SAMPLES), rng.integers(0, cols, GRAD_SAMPLES)
            final_params[name] = [[int(r), int(c), f32(prm.detach()[r, c])] for r, c in zip(rr, cc)]

    sft = {
        "format": "qsafe.lora_sft_reference.v1",
        "generator": gen,
        "model": model_path.name,
        "model_sha256": model_sha,
        "checks": {"loader_layout": layout, "vs_llamacpp_f32": sanity, "lora_merge": merge,
                   "chat_template": template},
        "lora": lora_block,
        "batch": {
            "format": "ChatML without system turn: '<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>"
                      "assistant\\n{response}<|im_end|>\\n', tokenized with add_special_tokens=False, "
                      "right-padded with 2 (<|im_end|>); no attention mask",
            "pairs": [{"prompt": p, "response": r} for p, r in SFT_PAIRS],
            "lengths": [len(encode(tok, chatml_prompt(p) + r + IM_END + "\n")) for p, r in SFT_PAIRS],
            "tokens": tokens_l,
            "loss_mask": mask_l,
            "n_masked": int(mask[:, 1:].sum()),
        },
        "loss_definition": "sum over (b,t) with loss_mask[b][t]=1 of -log_softmax(logits[b][t-1])[tokens[b][t]], "
                           "divided by the number of masked tokens in the batch; fp32 forward",
        "loss": f32(loss.item()),
        "grad_global_norm": global_norm_from_records(grads),
        "grads_note": f"GGUF layout (attn_q/attn_k lora_b rows in GGUF order); norm = Frobenius (float64 sum); "
                      f"samples = {GRAD_SAMPLES} [row, col, value] drawn with numpy default_rng({SAMPLE_SEED}+k), "
                      f"k = index of the tensor in this dict's order; 'full' = row-major",
        "grads": grads,
        "adamw": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in ADAMW.items()},
                  "max_grad_norm": MAX_GRAD_NORM,
                  "steps": ADAMW_STEPS,
                  "implementation": f"torch.optim.AdamW (default foreach impl, amsgrad=False) over the 420 LoRA "
                                    f"params, torch.nn.utils.clip_grad_norm_(params, 1.0) before each step",
                  "update": "t=1..; p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                            "p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps); g = clipped grad",
                  "losses": losses,
                  "grad_norms": gnorms,
                  "grad_norms_note": "global L2 norm over all 420 LoRA grads before clipping "
                                     "(clip_grad_norm_'s return)",
                  "final_params_samples": final_params,
                  "final_params_note": "LoRA values after the 10 steps, same sample positions as grads[name].samples"},
    }

    # --- DPO -------------------------------------------------------------------------------------
    reset_lora(params)
    triples, losses_t, rc_list = [], [], []
    for prompt, chosen, rejected in DPO_TRIPLES:
        p_ids = encode(tok, chatml_prompt(prompt))
        c_ids = encode(tok, chosen) + [IM_END_ID]
        r_ids = encode(tok, rejected) + [IM_END_ID]
        assert 8 <= len(c_ids) <= 30 and 8 <= len(r_ids) <= 30, (len(c_ids), len(r_ids))
        set_lora_enabled(model, False)
        with torch.no_grad():
            ref_c = response_logp(model, p_ids, c_ids)
            ref_r = response_logp(model, p_ids, r_ids)
        set_lora_enabled(model, True)
        pol_c = response_logp(model, p_ids, c_ids)
        pol_r = response_logp(model, p_ids, r_ids)
        rew_c = DPO_BETA * (pol_c - ref_c)
        rew_r = DPO_BETA * (pol_r - ref_r)
        loss_i = -F.logsigmoid(rew_c - rew_r)
        losses_t.append(loss_i)
        rc_list.append(bool(rew_c.item() > rew_r.item()))
        triples.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                        "prompt_tokens": p_ids, "chosen_tokens": c_ids, "rejected_tokens": r_ids,
                        "policy_chosen_logp": f32(pol_c.item()), "policy_rejected_logp": f32(pol_r.item()),
                        "reference_chosen_logp": f32(ref_c.item()), "reference_rejected_logp": f32(ref_r.item()),
                        "reward_chosen": f32(rew_c.item()), "reward_rejected": f32(rew_r.item()),
                        "loss": f32(loss_i.item())})
    dpo_loss = torch.stack(losses_t).mean()
    dpo_loss.backward()
    drec = grad_records(params, FULL_DPO)
    dpo_grads32 = {n: p.grad.detach().clone() for n, p in params.items()}
    print(f"DPO loss {dpo_loss.item():.7f} accuracy {sum(rc_list) / len(rc_list)}")
    for t in triples:
        print({k: v for k, v in t.items() if not k.endswith("_tokens") and k not in ("prompt", "chosen", "rejected")})
    dpo = {
        "format": "qsafe.dpo_reference.v1",
        "generator": gen,
        "model": model_path.name,
        "model_sha256": model_sha,
        "implementation": "direct PyTorch (sigmoid DPO loss of Rafailov et al. 2023, written out here; not TRL)",
        "beta": DPO_BETA,
        "lora": lora_block,
        "definition": "prompt_tokens = tokenize('<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n'); "
                      "chosen/rejected_tokens = tokenize(response) + [2]; sequence = prompt_tokens + response_tokens, "
                      "one sequence per forward (batch 1); logp = sum over response tokens of log p(token | prefix); "
                      "policy = base + LoRA (init above), reference = base; reward_x = beta*(policy_x - reference_x); "
                      "loss_i = -logsigmoid(reward_chosen - reward_rejected); loss = mean; "
                      "accuracy = mean(reward_chosen > reward_rejected); "
                      "grads of loss w.r.t. LoRA (reference has no grad)",
        "triples": triples,
        "loss": f32(dpo_loss.item()),
        "accuracy": sum(rc_list) / len(rc_list),
        "grad_global_norm": global_norm_from_records(drec),
        "grad_norms": {n: r["norm"] for n, r in drec.items()},
        "grads_full": {n: {"shape": drec[n]["shape"], "values": drec[n]["full"]} for n in FULL_DPO},
        "grads_note": "GGUF layout, Frobenius norms in float64, values row-major",
    }
    if not args.no_fp64:
        sft["fp64_crosscheck"] = dpo["fp64_crosscheck"] = fp64_crosscheck(
            model, params, tokens, mask, tok, loss.item(), sft_grads32, dpo_loss.item(), dpo_grads32)
    write_json(out / "lora_sft_reference.json", sft)
    write_json(out / "dpo_reference.json", dpo)


def _rel_errors(params, grads32: dict) -> dict:
    rel = []
    for n, p in params.items():
        g64 = p.grad.detach()
        rel.append(float(torch.linalg.vector_norm(grads32[n].to(torch.float64) - g64) /
                         torch.linalg.vector_norm(g64)))
    rel_sorted = sorted(rel)
    worst = max(range(len(rel)), key=lambda k: rel[k])
    return {"median_rel_grad_err": rel_sorted[len(rel) // 2],
            "max_rel_grad_err": rel_sorted[-1],
            "max_rel_grad_err_tensor": list(params)[worst]}


def fp64_crosscheck(model, params, tokens, mask, tok, sft_loss32, sft_grads32, dpo_loss32, dpo_grads32) -> dict:
    """The same SFT loss/gradient and DPO loss/gradient in float64 (same float32 weights and LoRA
    init values, evaluated in double): how far the fp32 fixture values are from exact arithmetic,
    i.e. the noise floor a float32 implementation can be held to. rel err = ||g32 - g64|| / ||g64||."""
    model.double()  # (the model is not used in float32 afterwards; transformers refuses .float() on it)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    reset_lora(params)
    l64 = sft_loss(model, tokens, mask)
    l64.backward()
    sft_res = {"loss_fp64": l64.item(), "loss_fp32_minus_fp64": sft_loss32 - l64.item(),
               **_rel_errors(params, sft_grads32)}
    reset_lora(params)
    losses = []
    for prompt, chosen, rejected in DPO_TRIPLES:
        p_ids = encode(tok, chatml_prompt(prompt))
        c_ids, r_ids = encode(tok, chosen) + [IM_END_ID], encode(tok, rejected) + [IM_END_ID]
        set_lora_enabled(model, False)
        with torch.no_grad():
            ref_c, ref_r = response_logp(model, p_ids, c_ids), response_logp(model, p_ids, r_ids)
        set_lora_enabled(model, True)
        pol_c, pol_r = response_logp(model, p_ids, c_ids), response_logp(model, p_ids, r_ids)
        losses.append(-F.logsigmoid(DPO_BETA * ((pol_c - ref_c) - (pol_r - ref_r))))
    d64 = torch.stack(losses).mean()
    d64.backward()
    dpo_res = {"loss_fp64": d64.item(), "loss_fp32_minus_fp64": dpo_loss32 - d64.item(),
               **_rel_errors(params, dpo_grads32)}
    print("fp64 crosscheck: SFT", sft_res, "DPO", dpo_res)
    note = ("same float32 weights and LoRA init evaluated in float64; rel err = ||g_fp32 - g_fp64|| / ||g_fp64|| "
            "per LoRA matrix: the fp32 rounding noise in these fixtures")
    return {"note": note, "sft": sft_res, "dpo": dpo_res}


def global_norm_from_records(rec: dict) -> float:
    return math.sqrt(sum(r["norm"] ** 2 for r in rec.values()))


if __name__ == "__main__":
    main()
