#!/usr/bin/env python3
"""llama.cpp applies a qsafe LoRA adapter file as qsafe does.

RUN BY HAND ONLY (a peer check; nothing in qsafe's build or tests needs it). qsafe writes its adapters in
llama.cpp's GGUF LoRA layout (general.type = adapter, adapter.type = lora, adapter.lora.alpha,
<tensor>.lora_a / .lora_b). This script loads the base model with the adapter through llama-cpp-python's
`lora_path` and follows qsafe's greedy answers (from `qsafe generate --json`, run on the model with the same
adapter merged in, `qsafe train ... --merge-into`) token by token: at every generated position llama.cpp's
top token must be qsafe's, or a near-tie (llama.cpp's logit of its own top token within --tie nats of its
logit for qsafe's token). It reports agreement per prompt and exits non-zero on a decisive disagreement.

Setup (llama.cpp built by tools/reference/build_llama_cpp.sh; the Python bindings from the same sdist):
    bash tools/reference/build_llama_cpp.sh
    peer=~/.cache/qsafe/peer
    build/release/bin/qsafe train sft --data my.jsonl -o adapter.gguf --merge-into merged.gguf
    build/release/bin/qsafe generate --model merged.gguf --prompts-file prompts.txt -n 48 --json qsafe.json
    PYTHONPATH=$peer/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=$peer/llama.cpp-0.3.36/build/bin \\
        python3 tools/reference/llama_cpp_lora_check.py --base $peer/smollm2-F32.gguf --adapter adapter.gguf \\
        --qsafe qsafe.json
The base given to llama.cpp must hold the values qsafe trained on: an F32 (or F16) file of the same model
(smollm2-F32.gguf is the Q4_1 file dequantized by llama-quantize), so only the adapter is compared.
Needs numpy.
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="base model GGUF (F32/F16 values of the model qsafe trained on)")
    ap.add_argument("--adapter", required=True, help="qsafe's LoRA adapter GGUF")
    ap.add_argument("--qsafe", required=True, help="`qsafe generate --json` output on the merged model")
    ap.add_argument("--tie", type=float, default=0.1, help="near-tie tolerance in nats (default 0.1)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    cases = json.load(open(args.qsafe))
    n_ctx = max(len(c["prompt_ids"]) + len(c["generated_ids"]) for c in cases) + 8
    llm = Llama(model_path=args.base, lora_path=args.adapter, n_ctx=n_ctx, n_threads=args.threads, logits_all=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    positions = same = ties = 0
    decisive = []
    for i, c in enumerate(cases):
        llm.reset()
        ids = c["prompt_ids"]
        gen = c["generated_ids"]
        llm.eval(ids + gen)
        scores = np.asarray(llm.scores[: len(ids) + len(gen)], dtype=np.float64)
        case_same = case_ties = 0
        for k, tok in enumerate(gen + [None]):
            row = scores[len(ids) + k - 1]
            top = int(np.argmax(row))
            if tok is None:
                # qsafe stopped: by end-of-generation (llama.cpp's top must end the turn too) or the length limit.
                if c.get("stop") == "eog" and not llama_cpp.llama_vocab_is_eog(vocab, top):
                    decisive.append((i, k, "qsafe ended the answer, llama.cpp continues with token %d" % top))
                break
            positions += 1
            if top == tok:
                same += 1
                case_same += 1
            elif row[top] - row[tok] < args.tie:
                ties += 1
                case_ties += 1
            else:
                decisive.append((i, k, "llama.cpp top %d vs qsafe %d, gap %.3f nats" % (top, tok, row[top] - row[tok])))
        print("case %d: %d/%d positions agree, %d near-ties  | %s" % (i + 1, case_same, len(gen), case_ties, c["prompt"][:60]))
    print("total: %d positions, %d same top token, %d near-ties, %d decisive disagreements" % (positions, same, ties, len(decisive)))
    for d in decisive:
        print("  decisive: case %d position %d: %s" % (d[0] + 1, d[1], d[2]))
    sys.exit(1 if decisive else 0)


if __name__ == "__main__":
    main()
