#!/usr/bin/env python3
"""Writes reference dequantized values for a few tensors of a GGUF model using the `gguf` PyPI package
(llama.cpp's own Python reader and numpy dequantizers), independently of qsafe's C++ code.

tests/io/gguf_reference_test.cpp compares qsafe::gguf::File::tensor_to_f32 against this file bit for bit
(first values of selected rows) and by a float64 sum over the whole tensor.

usage: pip install gguf && python3 tools/reference/gguf_dequant_reference.py MODEL.gguf OUT.json
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

TENSORS = {  # name -> rows whose leading values are stored
    "blk.0.attn_q.weight": [0, 1, 575],
    "blk.29.ffn_down.weight": [0, 575],
    "token_embd.weight": [0, 1, 49151],
    "blk.0.attn_norm.weight": [0],
}
VALUES_PER_ROW = 48


def main(model: str, out: str) -> None:
    reader = GGUFReader(model)
    by_name = {t.name: t for t in reader.tensors}
    result = {"model": model.rsplit("/", 1)[-1], "values_per_row": VALUES_PER_ROW, "tensors": []}
    for name, rows in TENSORS.items():
        t = by_name[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        row_length = int(t.shape[0])  # ggml order: shape[0] is the row length
        values = values.reshape(-1, row_length)
        entry = {
            "name": name,
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "sum": float(values.astype(np.float64).sum()),
            "sum_abs": float(np.abs(values.astype(np.float64)).sum()),
            "rows": {str(r): [int(b) for b in values[r, :VALUES_PER_ROW].view(np.uint32)] for r in rows},
        }
        result["tensors"].append(entry)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
