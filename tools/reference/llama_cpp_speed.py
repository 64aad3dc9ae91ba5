#!/usr/bin/env python3
"""llama.cpp's prefill and decode speed on a GGUF, for the comparison in docs/benchmarks.md.

RUN BY HAND ONLY (needs llama-cpp-python, see make_fixtures.py's header). Mirrors bench/bench_decode:
prefill = one 128-token prompt in one batch; decode = 32 tokens, one llama_decode each, after a 64-token
prompt. Prints tokens/s (median of --repeats runs) per thread count.

    ~/.venvs/qsafe-ref/bin/python tools/reference/llama_cpp_speed.py --model "$(scripts/fetch_model.sh)"
"""
from __future__ import annotations

import argparse
import statistics
import time

from llama_cpp import Llama


def measure(model: str, threads: int, repeats: int) -> tuple[float, float]:
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                flash_attn=False, verbose=False)
    prompt = [(17 * i + 100) % 40000 + 20 for i in range(128)]  # arbitrary ordinary tokens
    prefill, decode = [], []
    for _ in range(repeats + 1):  # the first run warms up and is discarded
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        llm.reset()
        llm.eval(prompt[:64])
        t2 = time.perf_counter()
        for i in range(32):
            llm.eval([prompt[64 + i]])
        t3 = time.perf_counter()
        prefill.append(128 / (t1 - t0))
        decode.append(32 / (t3 - t2))
    return statistics.median(prefill[1:]), statistics.median(decode[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for threads in (1, 2):
        p, d = measure(args.model, threads, args.repeats)
        print(f"threads {threads}: prefill {p:.1f} tok/s, decode {d:.1f} tok/s")


if __name__ == "__main__":
    main()
