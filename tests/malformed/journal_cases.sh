#!/usr/bin/env bash
# Journals of an interrupted evaluation (rows of the malformed-input table, docs/reliability.md):
#   1. a journal cut in the middle of its last line: --resume keeps every complete row, says it dropped the
#      partial one, answers that row again and finishes with exit code 0;
#   2. records with impossible values (a negative token count, negative seconds, a similarity above 1): the
#      resume fails with exit code 1 and a message naming the journal's file and line and the key.
#   journal_cases.sh QSAFE INPUTS_DIR   (INPUTS_DIR/eval: the finished run of make_inputs.sh)
set -euo pipefail
qsafe="$1" dir="$2"
eval_args=(eval -m "$dir/tiny.gguf" --variants fp -d default --limit 3 --max-new-tokens 4 -t 1)
fail() { echo "FAIL: $*" >&2; exit 1; }
complete_rows() { grep -c '"prompt_id"' "$1" || true; }

rows=$(complete_rows "$dir/eval/journal.jsonl")
[ "$rows" -eq 3 ] || fail "the finished run's journal has $rows response rows, expected 3"

# 1. cut mid-line
rm -rf "$dir/eval-cut" && cp -r "$dir/eval" "$dir/eval-cut"
journal="$dir/eval-cut/journal.jsonl"
size=$(stat -c %s "$journal")
last_line=$(tail -n 1 "$journal" | wc -c)
truncate -s $((size - last_line / 2)) "$journal"
kept=$(( $(wc -l < "$journal") ))   # complete lines left (the torn one has no newline)
set +e
out=$("$qsafe" "${eval_args[@]}" -o "$dir/eval-cut" --resume 2>&1)
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "resuming a journal cut mid-line exited $rc: $out"
grep -q "\[journal .*journal.jsonl: $((kept > 0 ? $(head -n "$kept" "$journal" | grep -c '"prompt_id"') : 0)) finished rows\]" <<<"$out" ||
  fail "the resume did not keep every complete row: $out"
grep -q "dropped the unfinished last line ([0-9]* bytes)" <<<"$out" || fail "the resume did not say it dropped the partial line: $out"
[ "$(complete_rows "$journal")" -eq 3 ] || fail "after the resume the journal has $(complete_rows "$journal") rows, expected 3"
echo "cut mid-line: resumed, kept the complete rows and said so"

# 2. impossible values, each in the first response row (line 2: line 1 is the run's header)
impossible() {
  local name="$1" from="$2" to="$3" expect="$4"
  rm -rf "$dir/eval-$name" && cp -r "$dir/eval" "$dir/eval-$name"
  local j="$dir/eval-$name/journal.jsonl" line
  line=$(grep -n '"prompt_id"' "$j" | head -n 1 | cut -d: -f1)
  sed -i -E "${line}s/$from/$to/" "$j"
  grep -q "$to" "$j" || fail "$name: the edit did not apply"
  set +e
  out=$("$qsafe" "${eval_args[@]}" -o "$dir/eval-$name" --resume 2>&1)
  rc=$?
  set -e
  [ "$rc" -ge 1 ] && [ "$rc" -le 125 ] || fail "$name: exit code $rc, expected a failure: $out"
  grep -qE "journal.jsonl:$line: .*$expect" <<<"$out" || fail "$name: the message does not name line $line and '$expect': $out"
  if grep -qE "AddressSanitizer|runtime error:" <<<"$out"; then fail "$name: sanitizer report: $out"; fi
  echo "$name: refused at line $line"
}
impossible negative-tokens '"prompt_tokens":[0-9]+' '"prompt_tokens":-5' "key 'prompt_tokens' must be a non-negative integer, not -5"
impossible negative-seconds '"seconds":[0-9.e+-]+' '"seconds":-1.5' "key 'seconds' is -1.5, outside"
impossible unknown-verdict '"verdict":"[a-z_]+"' '"verdict":"maybe"' "verdict.*maybe"
