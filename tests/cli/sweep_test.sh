#!/usr/bin/env bash
# `qsafe sweep` on the default model (docs/evaluation-at-scale.md): a sweep file expands to one evaluation
# per (model, seed); each run's report equals the report of the same `qsafe eval` run by hand; the
# combined report lists every run; running the sweep again resumes (nothing is answered twice) and writes
# the same bytes; a sweep file with a typo fails before any work.
#   sweep_test.sh QSAFE_BINARY WORK_DIR
set -euo pipefail
qsafe="$1"
work="$2"
source "$(dirname "${BASH_SOURCE[0]}")/real_model.sh"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > sweep.json <<JSON
{"models": ["$model"], "methods": ["rtn"], "schemes": ["int4-g128-asym", "int2-g32-asym"],
 "datasets": ["default"], "seeds": [0, 1], "limit": 3, "max_new_tokens": 12, "batch": 2}
JSON
stem=$(basename "$model" .gguf)

"$qsafe" sweep sweep.json -o out --dry-run > dry.txt 2> /dev/null || fail "--dry-run"
[ "$(wc -l < dry.txt)" -eq 2 ] || { cat dry.txt >&2; fail "--dry-run lists $(wc -l < dry.txt) runs, not 2"; }

"$qsafe" sweep sweep.json -o out -t 2 > sweep.out 2> sweep.log || { cat sweep.log >&2; fail "sweep"; }
for seed in 0 1; do
  [ -f "out/$stem/seed-$seed/report.json" ] || fail "no report for seed $seed"
  grep -q "| $stem/seed-$seed | default | int2-g32-asym:rtn | rtn |" out/sweep-report.md || { cat out/sweep-report.md >&2; fail "seed $seed missing from the combined report"; }
done
[ -f out/sweep-default.svg ] || fail "no combined plot"
# The same evaluation by hand gives the same report.
"$qsafe" eval -m "$model" --variants fp,int4-g128-asym:rtn,int2-g32-asym:rtn -d default --limit 3 --seed 1 \
  --max-new-tokens 12 --batch 2 -t 2 -o by-hand > /dev/null 2> by-hand.log || { cat by-hand.log >&2; fail "eval by hand"; }
cmp -s by-hand/report.json "out/$stem/seed-1/report.json" || fail "the sweep's run differs from the same qsafe eval"
# Again: everything is finished, nothing is answered twice, the combined report is the same.
cp out/sweep-report.md first.md
lines=$(cat out/"$stem"/seed-*/journal.jsonl | wc -l)
"$qsafe" sweep sweep.json -o out -t 2 > /dev/null 2> again.log || { cat again.log >&2; fail "sweep again"; }
[ "$(cat out/"$stem"/seed-*/journal.jsonl | wc -l)" -eq "$lines" ] || fail "the second sweep answered again"
cmp -s first.md out/sweep-report.md || fail "the second sweep's report differs"
# A typo in the file fails at once, naming the key.
echo '{"methods": ["rtn"], "schemes": ["int4-g128-asym"], "dataset": ["default"]}' > typo.json
if "$qsafe" sweep typo.json -o typo 2> typo.log; then fail "a sweep with an unknown key ran"; fi
grep -q "typo.json: unknown key 'dataset'" typo.log || { cat typo.log >&2; fail "unknown-key message"; }
echo "sweep: 2 runs, reports as by hand, resumed without new answers" >&2
