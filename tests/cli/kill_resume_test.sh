#!/usr/bin/env bash
# Crash-safe jobs on the default model (docs/reliability.md):
#   1. `qsafe quantize` killed with SIGKILL at random moments leaves no output file or a complete one (the
#      uninterrupted run's bytes), and never a temporary file that a later run would mistake for output;
#   2. `qsafe eval` killed with SIGKILL at random moments and resumed each time ends with a report
#      byte-identical to an uninterrupted run's;
#   3. a full disk (a file-size limit: writes fail with EFBIG as they would with ENOSPC) gives a clear error
#      naming the file, a non-zero exit code, and leaves the previous complete output in place.
#   kill_resume_test.sh QSAFE_BINARY WORK_DIR
set -euo pipefail
qsafe="$1"
work="$2"
source "$(dirname "${BASH_SOURCE[0]}")/real_model.sh"
require_datasets  # WikiText-2 calibration of the GPTQ run
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
# A kill moment in [lo, hi) seconds, from a seed printed so a failure can be repeated (KILL_SEED=...).
seed="${KILL_SEED:-$RANDOM}"
echo "kill moments from seed $seed" >&2
RANDOM=$seed
moment() { awk -v lo="$1" -v hi="$2" -v r="$RANDOM" 'BEGIN { printf "%.2f", lo + (hi - lo) * r / 32768 }'; }
# Runs the command in the background and kills it with SIGKILL after $1 seconds; returns 0 if it was killed,
# 1 if it had already finished.
kill_after() {
  local when="$1"; shift
  "$@" > /dev/null 2>&1 &
  local pid=$!
  sleep "$when"
  if kill -9 "$pid" 2> /dev/null; then wait "$pid" 2> /dev/null || true; return 0; fi
  wait "$pid" 2> /dev/null || true
  return 1
}

# 1. quantize (GPTQ: calibration, then one layer after the other, then the file)
quantize=("$qsafe" quantize -m "$model" -r '*=int4-g32-asym' --method gptq --calib-samples 4 --calib-len 64 -t 2)
start=$(date +%s.%N)
"${quantize[@]}" -o full.gguf 2> quantize.log || { cat quantize.log >&2; fail "quantize"; }
took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
echo "quantize took ${took}s" >&2
for i in 1 2 3 4; do
  rm -f cut.gguf
  when=$(moment 0.2 "$took")
  if kill_after "$when" "${quantize[@]}" -o cut.gguf; then
    if [ -f cut.gguf ]; then
      cmp -s full.gguf cut.gguf || fail "quantize killed at ${when}s left an incomplete cut.gguf"
      echo "quantize killed at ${when}s: the output is complete" >&2
    else
      echo "quantize killed at ${when}s: no output" >&2
    fi
  else
    cmp -s full.gguf cut.gguf || fail "quantize that finished before ${when}s wrote different bytes"
    echo "quantize finished before ${when}s" >&2
  fi
  # A killed writer leaves at most its own temporary file, never under the output's name.
  for t in cut.gguf.tmp-*; do [ -e "$t" ] && rm -f "$t"; done
done

# 2. eval: killed three times, resumed each time, then compared with an uninterrupted run
eval_cmd=("$qsafe" eval -m "$model" --variants fp,int4-g32-asym -d default --limit 4 --max-new-tokens 24 -t 2)
start=$(date +%s.%N)
"${eval_cmd[@]}" -o eval-full 2> eval-full.log || { cat eval-full.log >&2; fail "eval"; }
took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
echo "eval took ${took}s" >&2
resume=()
for i in 1 2 3; do
  # Each kill within the first third of a whole run's time, so that the resumed runs are killed too.
  when=$(moment 0.5 "$(awk -v t="$took" 'BEGIN { printf "%.2f", t / 3 > 0.6 ? t / 3 : 0.6 }')")
  if kill_after "$when" "${eval_cmd[@]}" -o eval-cut "${resume[@]}"; then
    echo "eval killed at ${when}s ($(grep -c '"prompt_id"' eval-cut/journal.jsonl 2> /dev/null || true) rows journaled)" >&2
  else
    echo "eval finished before ${when}s" >&2
  fi
  resume=(--resume)
done
"${eval_cmd[@]}" -o eval-cut --resume 2> eval-cut.log || { cat eval-cut.log >&2; fail "the resumed eval failed"; }
for f in report.json report.md; do
  cmp eval-full/$f eval-cut/$f || fail "the resumed eval's $f differs from the uninterrupted run's"
done
echo "eval: killed three times, resumed: report.json and report.md byte-identical" >&2

# 3. a full disk: the report and the quantized file cannot be written; the previous ones stay
cp eval-full/report.json report-before.json
size_limit_kb=8   # the journal is complete already; report.json (about 12 kB) needs more than this
set +e
out=$(trap '' XFSZ; ulimit -f $size_limit_kb; "${eval_cmd[@]}" -o eval-full --resume 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "eval on a full disk exited 0"
grep -qE "eval-full/report\.[a-z]+\.tmp-[0-9-]+: write failed: File too large|eval-full/report.*: (write|close) failed" <<<"$out" ||
  fail "eval on a full disk: no message naming the report file: $out"
cmp -s report-before.json eval-full/report.json || fail "eval on a full disk damaged the previous report"
ls eval-full/*.tmp-* > /dev/null 2>&1 && fail "eval on a full disk left a temporary file"
echo "eval on a full disk: exit $rc, previous report intact: $(grep -oE 'report[^ ]*: (write|close) failed: [^$]*' <<<"$out" | head -n 1)" >&2
before=$(md5sum < full.gguf)
set +e
out=$(trap '' XFSZ; ulimit -f 1024; "$qsafe" quantize -m "$model" -r '*=int4-g32-asym' -t 2 -o full.gguf 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "quantize on a full disk exited 0"
grep -qE "full\.gguf\.tmp-[0-9-]+: (write|close) failed" <<<"$out" || fail "quantize on a full disk: no message naming the file: $out"
[ "$(md5sum < full.gguf)" = "$before" ] || fail "quantize on a full disk damaged the previous file"
ls ./*.tmp-* > /dev/null 2>&1 && fail "quantize on a full disk left a temporary file"
echo "quantize on a full disk: exit $rc, previous file intact" >&2
echo "crash-safe: all checks passed" >&2
