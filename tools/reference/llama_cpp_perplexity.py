#!/usr/bin/env python3
"""Perplexity of a GGUF file in llama.cpp (via llama-cpp-python) on the first WikiText-2 chunks.

RUN BY HAND ONLY (never by CI): a check that stock llama.cpp loads a quantized file qsafe wrote (its
int4-g32-sym / int8-g32-sym layers are Q4_0 / Q8_0 tensors) and computes the same perplexity as
`qsafe perplexity --chunks N` on that file. Needs the venv of make_fixtures.py:

    ~/.venvs/qsafe-ref/bin/python tools/reference/llama_cpp_perplexity.py FILE.gguf --chunks 8

Chunks are scored as llama.cpp's tools/perplexity does (n_ctx 512, first token replaced by BOS when the
vocabulary adds one, the second half of each chunk scored), which is what qsafe's perplexity windows follow.
"""
import argparse
import math
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--wikitext", default="/work/shared/datasets/wikitext2/test.txt")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    llm = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=args.ctx, n_ubatch=args.ctx, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=False, flash_attn=False, verbose=False)
    with open(args.wikitext, "rb") as f:
        raw = f.read()
    text = (raw[:-1] if raw.endswith(b"\n") else raw).decode("utf-8")  # llama.cpp's -f drops one trailing '\n'
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))
    n_ctx, first, n_vocab = args.ctx, args.ctx // 2, llm.n_vocab()
    ctx = llm._ctx.ctx
    batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
    nll_sum, count = 0.0, 0
    for i in range(args.chunks):
        chunk = list(tokens[i * n_ctx : (i + 1) * n_ctx])
        if add_bos:
            chunk[0] = llm.token_bos()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        batch.n_tokens = n_ctx
        for k, t in enumerate(chunk):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = t, k, 1
            batch.seq_id[k][0] = 0
            batch.logits[k] = 1 if k >= first else 0
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError(f"llama_decode failed on chunk {i}")
        n_out = n_ctx - first
        x = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(n_out * n_vocab,))
        x = x.reshape(n_out, n_vocab)[: n_out - 1].astype(np.float64)
        tgt = np.asarray(chunk[first + 1 : n_ctx])
        m = x.max(axis=1)
        lse = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
        nll_sum += float((lse - x[np.arange(x.shape[0]), tgt]).sum())
        count += x.shape[0]
        print(f"[{i + 1}] running ppl {math.exp(nll_sum / count):.4f}", file=sys.stderr)
    print(f"{args.model}: llama.cpp perplexity {math.exp(nll_sum / count):.4f} over {args.chunks} chunks of {n_ctx} "
          f"({count} scored tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
