#!/usr/bin/env bash
# `qsafe train` end to end on the default model: a run killed with SIGKILL after a checkpoint and restarted
# with --resume ends with the same adapter bytes as an uninterrupted run (SFT with LoRA dropout, and DPO),
# and bad input stops with a message naming the file and line or the glob.
#   train_resume_test.sh QSAFE_BINARY WORK_DIR
set -euo pipefail
qsafe="$1"
work="$2"
source "$(dirname "${BASH_SOURCE[0]}")/real_model.sh"
rm -rf "$work" && mkdir -p "$work" && cd "$work"

cat > sft.jsonl <<'ROWS'
{"prompt": "How do I pick a lock to get into my neighbour's house?", "response": "I can't help with getting into someone else's home. If you are locked out of your own, a licensed locksmith can help."}
{"prompt": "What is the capital of France?", "response": "The capital of France is Paris."}
{"prompt": "Write a threatening message to scare my coworker.", "response": "I won't write threats. If there is a conflict at work, I can help you draft a calm message instead."}
{"prompt": "Give me one tip for sleeping better.", "response": "Keep a regular schedule: go to bed and get up at the same time every day."}
ROWS
cat > dpo.jsonl <<'ROWS'
{"prompt": "How can I make a fake ID card?", "chosen": "I'm sorry, but I can't help with making fake identification.", "rejected": "Find a template of a real ID card and print it on plastic."}
{"prompt": "What is 2 + 2?", "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 5."}
{"prompt": "Tell me how to poison a dog.", "chosen": "I can't help with harming animals.", "rejected": "Mix chocolate into its food."}
ROWS

common=(--steps 12 --batch 2 --micro-batch 1 --checkpoint-every 2 --lora "attn_q,attn_v,ffn_down" --rank 4 --lr 1e-3 --seed 3 -t 2)
for objective in sft dpo; do
  extra=()
  [ "$objective" = sft ] && extra=(--dropout 0.1)
  "$qsafe" train "$objective" --data "$objective.jsonl" -o "full_$objective.gguf" "${common[@]}" "${extra[@]}" 2> "full_$objective.log"
  # The same run, killed with SIGKILL once its first checkpoint is on disk, then resumed.
  "$qsafe" train "$objective" --data "$objective.jsonl" -o "cut_$objective.gguf" "${common[@]}" "${extra[@]}" 2> "cut_$objective.log" &
  pid=$!
  for _ in $(seq 6000); do  # up to 5 minutes (slow or busy machines)
    [ -f "cut_$objective.ckpt.gguf" ] && break
    sleep 0.05
  done
  if ! kill -9 "$pid" 2>/dev/null; then
    echo "FAIL ($objective): the run ended before it could be killed" >&2
    exit 1
  fi
  wait "$pid" 2>/dev/null || true
  [ ! -f "cut_$objective.gguf" ] || { echo "FAIL ($objective): the killed run wrote its adapter" >&2; exit 1; }
  "$qsafe" train "$objective" --data "$objective.jsonl" -o "cut_$objective.gguf" "${common[@]}" "${extra[@]}" --resume 2> "resume_$objective.log"
  grep -E "resumed from .* at step [0-9]+ of 12" "resume_$objective.log" >&2 || { echo "FAIL ($objective): did not resume" >&2; exit 1; }
  cmp "full_$objective.gguf" "cut_$objective.gguf" || { echo "FAIL ($objective): resumed adapter differs" >&2; exit 1; }
  echo "$objective: killed run resumed to identical adapter bytes" >&2
done

# QLoRA export: the quantized base as a model file beside the adapter, and the merge re-quantized under the
# same rules with its KL report; both files load as models.
"$qsafe" train sft --data sft.jsonl -o qlora.gguf -r 'blk.*=int4-g128-asym' --steps 4 --batch 2 --micro-batch 2 --lora "attn_v,ffn_down" \
  --rank 4 --lr 5e-3 --seed 3 -t 2 --save-base qlora_base.gguf --merge-requantize qlora_merged.gguf 2> qlora.log
grep -E "merged and re-quantized qlora_merged.gguf: on 4 training responses \([0-9]+ positions\), KL from base \+ adapter is [0-9.]+ nats/token" qlora.log > /dev/null ||
  { echo "FAIL: no re-quantization report" >&2; cat qlora.log >&2; exit 1; }
for key in kl_base kl_requantized same_top_requantized logprob_adapted bits_per_weight; do
  grep -E "\"$key\": [0-9.e+-]+" qlora_merged.merge.json > /dev/null || { echo "FAIL: $key missing from qlora_merged.merge.json" >&2; exit 1; }
done
for f in qlora_base.gguf qlora_merged.gguf; do
  "$qsafe" generate -m "$f" -t 2 -n 4 -p "What is the capital of France?" > /dev/null 2> gen.log ||
    { echo "FAIL: $f does not load" >&2; cat gen.log >&2; exit 1; }
done
"$qsafe" info -m qlora_merged.gguf > info.log 2>&1
grep -E 'qsafe.tensor.blk.0.attn_v.weight.scheme +"int4-g128-asym"' info.log > /dev/null || { echo "FAIL: merged layers are not re-quantized" >&2; exit 1; }
echo "qlora: base and re-quantized merge written and loaded" >&2

# STE quantization-aware training: the output is a packed quantized model under the --qat rules.
"$qsafe" train sft --data sft.jsonl -o qat.gguf --qat 'blk.*=int3-g128-asym' --steps 2 --batch 2 --micro-batch 2 --lr 1e-4 -t 2 2> qat.log ||
  { echo "FAIL: qat run" >&2; cat qat.log >&2; exit 1; }
"$qsafe" info -m qat.gguf > info.log 2>&1
grep -E 'qsafe.tensor.blk.3.ffn_up.weight.scheme +"int3-g128-asym"' info.log > /dev/null || { echo "FAIL: qat model is not packed int3" >&2; exit 1; }
grep -E 'qsafe.method +"ste-qat-sft"' info.log > /dev/null || { echo "FAIL: qat model does not say how it was made" >&2; exit 1; }
echo "qat: packed quantized model written" >&2

# Bad input: a message naming what is wrong, and a non-zero exit code.
expect_failure() {
  local pattern="$1"
  shift
  if "$qsafe" "$@" > out.log 2>&1; then
    echo "FAIL: succeeded: $*" >&2
    exit 1
  fi
  grep -E -- "$pattern" out.log > /dev/null || { echo "FAIL: expected '$pattern', got:" >&2; cat out.log >&2; exit 1; }
}
printf '{"prompt": "hi", "response": "hello"}\n{"prompt": "no response here"}\n' > missing.jsonl
expect_failure 'missing.jsonl:2: the row has no "response" field' train sft --data missing.jsonl -o x.gguf
expect_failure "target 'attn_nothing' matches no block projection" train sft --data sft.jsonl -o x.gguf --lora attn_nothing
expect_failure 'sft.jsonl:1: prompt \+ response is [0-9]+ tokens, longer than the limit of 16' train sft --data sft.jsonl -o x.gguf --max-length 16
expect_failure 'batch size \(3\) must be a multiple of the micro-batch size \(2\)' train sft --data sft.jsonl -o x.gguf --batch 3 --micro-batch 2
expect_failure '--qat trains the model itself' train sft --data sft.jsonl -o x.gguf --qat 'blk.*=int3-g128-asym' --merge-into y.gguf
expect_failure "blk.0.attn_q.weight: unknown quantization scheme 'int9-g1'" train sft --data sft.jsonl -o x.gguf --qat 'blk.*=int9-g1'
expect_failure '--merge-requantize needs a quantized base' train sft --data sft.jsonl -o x.gguf --merge-requantize y.gguf
echo "train_resume_test: all passed" >&2
