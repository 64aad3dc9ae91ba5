#!/usr/bin/env bash
# Determinism on the default model (docs/reliability.md): `qsafe eval`, `qsafe quantize` with every method
# and `qsafe perplexity` give byte-identical results with 1 and 2 threads, and across runs (eval and
# perplexity run a third time; quantize's two runs are separate processes already).
#   determinism_test.sh QSAFE_BINARY WORK_DIR [eval|quantize|perplexity]   (default: all three)
set -euo pipefail
qsafe="$1"
work="$2"
what="${3:-all}"
source "$(dirname "${BASH_SOURCE[0]}")/real_model.sh"
require_datasets  # WikiText-2 (calibration, perplexity) and XSTest
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
same() { cmp -s "$1" "$2" || fail "$3: $1 and $2 differ"; }

if [ "$what" = all ] || [ "$what" = eval ]; then
  # Two variants (fp and a quantized one), two datasets, batched decoding: 1 thread, 2 threads, 2 again.
  args=(eval -m "$model" --variants fp,int4-g128-asym:gptq --calib-samples 4 --calib-len 64 -d default,xstest --limit 3
        --max-new-tokens 16 --batch 3)
  "$qsafe" "${args[@]}" -t 1 -o eval-t1 > eval-t1.out 2> eval-t1.log || { cat eval-t1.log >&2; fail "eval -t 1"; }
  "$qsafe" "${args[@]}" -t 2 -o eval-t2 > eval-t2.out 2> eval-t2.log || { cat eval-t2.log >&2; fail "eval -t 2"; }
  "$qsafe" "${args[@]}" -t 2 -o eval-t2b > eval-t2b.out 2> eval-t2b.log || { cat eval-t2b.log >&2; fail "eval -t 2 (again)"; }
  for f in report.json report.md; do
    same eval-t1/$f eval-t2/$f "eval, 1 vs 2 threads"
    same eval-t2/$f eval-t2b/$f "eval, two runs"
  done
  # The answers themselves (the report holds rates): the journal without its timings.
  strip() { sed -E 's/"seconds":[0-9.e+-]+//; s/"(wall_)?seconds[a-z_]*":[0-9.e+-]+//g' "$1"; }
  [ "$(strip eval-t1/journal.jsonl)" = "$(strip eval-t2/journal.jsonl)" ] || fail "eval: the answers differ between 1 and 2 threads"
  echo "eval: identical reports and answers with 1 and 2 threads and across runs" >&2
fi

if [ "$what" = all ] || [ "$what" = quantize ]; then
  # Every method the tool lists in its help ("post-training method: rtn, imatrix, ...").
  methods=$("$qsafe" quantize --help | sed -nE 's/.*post-training method: ([a-z, ]+)$/\1/p' | tr -d ' ' | tr ',' ' ')
  [ -n "$methods" ] || fail "could not read the method list from qsafe quantize --help"
  for method in $methods; do
    # The first and the last block (4 and 3 bits) and the output layer: every kind of layer and the whole
    # calibration pass, at a fraction of a full model's time. Two runs, one with 1 thread and one with 2.
    args=(quantize -m "$model" -r '*=fp32,blk.0.*=int4-g128-asym,blk.29.*=int3-g128-asym,output=int8-g32-sym'
          --no-output-default --method "$method" --calib-samples 4 --calib-len 64)
    "$qsafe" "${args[@]}" -t 1 -o "$method-t1.gguf" > "$method-t1.log" 2>&1 || { cat "$method-t1.log" >&2; fail "quantize $method -t 1"; }
    "$qsafe" "${args[@]}" -t 2 -o "$method-t2.gguf" > "$method-t2.log" 2>&1 || { cat "$method-t2.log" >&2; fail "quantize $method -t 2"; }
    same "$method-t1.gguf" "$method-t2.gguf" "quantize --method $method, a run with 1 thread and a run with 2"
    rm -f "$method"-t*.gguf
    echo "quantize --method $method: identical files from a 1-thread and a 2-thread run" >&2
  done
fi

if [ "$what" = all ] || [ "$what" = perplexity ]; then
  head -c 60000 "$data_dir/wikitext2/test.txt" > text.txt
  for t in 1 2 2; do
    "$qsafe" perplexity -m "$model" -f text.txt -c 128 --chunks 4 -t $t --json "ppl-t$t.json" > /dev/null 2>&1
    mv "ppl-t$t.json" "ppl-t$t-$((i = ${i:-0} + 1)).json"
  done
  strip_time() { grep -vE '"[a-z_]*seconds[a-z_]*"|tok_per_s|tokens_per_second' "$1"; }
  [ "$(strip_time ppl-t1-1.json)" = "$(strip_time ppl-t2-2.json)" ] || fail "perplexity: 1 and 2 threads differ"
  [ "$(strip_time ppl-t2-2.json)" = "$(strip_time ppl-t2-3.json)" ] || fail "perplexity: two runs differ"
  echo "perplexity: identical with 1 and 2 threads and across runs" >&2
fi
