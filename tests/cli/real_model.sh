# Sourced by the CLI test scripts that run the default model. Sets `model` (the cached SmolLM2 file) and
# `data_dir` (the shared datasets), and skips the test when what it needs is missing: exit 77, which ctest
# reports as skipped — but exit 1 under CI, where every test must run.
skip_or_fail() {
  echo "SKIPPED: $1" >&2
  case "${CI:-}" in true | 1 | yes) exit 1 ;; esac
  exit 77
}
model="${QSAFE_MODEL:-${QSAFE_CACHE_DIR:-$HOME/.cache/qsafe}/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || skip_or_fail "$model not found (scripts/fetch_model.sh fetches it)"
data_dir="${QSAFE_DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared/datasets}"
# Call when the test reads the shared datasets (WikiText-2 calibration, XSTest, ...).
require_datasets() {
  [ -f "$data_dir/wikitext2/test.txt" ] || skip_or_fail "the shared datasets were not found at $data_dir (set QSAFE_DATA_DIR)"
  export QSAFE_DATA_DIR="$data_dir"
}
