#!/usr/bin/env bash
# GPU check, one run under 5 minutes on one GPU, from the repository root:
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--budget SECONDS] [--wheels DIR]
#
# 1. Python: $PYTHON (default python3) if its torch sees a GPU; otherwise a virtual environment
#    .venv-gpu-check with torch==2.14.1 and torchvision==0.29.1 from pip (or from --wheels DIR,
#    offline). The package is used from src/ (PYTHONPATH); its other dependencies are installed
#    when pip can reach them, and the few tests that need a missing one skip.
# 2. The CUDA-marked tests (tests/test_cuda.py: training step, resume, sampling, evaluation
#    features, a 1-process NCCL group, pinned copies).
# 3. benchmarks/gpu_step.py at 224 px: VGG19 (random weights), batch 12 and the largest batch that
#    fits; images/s, memory, share of the bf16 matmul peak measured in the same run, and the
#    projected time of the paper's schedule on Oxford-102 and CUB.
#
# The budget (default 290 s) covers steps 2 and 3; installing torch in step 1, when it is needed,
# has its own 10 minutes. Everything printed also goes to $OUT/gpu_check.log when $OUT is set (and
# gpu_step.json there). --dry-run: the same steps on the CPU with tiny sizes, to rehearse the script
# without a GPU. The exit status is the tests' (0: all passed or skipped), else the benchmark's;
# 124 when a step ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

DRY_RUN=0 BUDGET="" WHEELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --wheels) WHEELS="$2"; shift ;;
    *) echo "unknown argument: $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
# a GPU run fits 5 minutes; the CPU rehearsal of the same steps needs longer on a small machine
[ -z "$BUDGET" ] && { [ "$DRY_RUN" = 1 ] && BUDGET=1500 || BUDGET=290; }
START=$(date +%s)
left() { echo $(( START + BUDGET - $(date +%s) )); }
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
echo "== sdn GPU check $(date -u +%FT%TZ), budget ${BUDGET} s, dry run: $DRY_RUN"

# --- 1. Python with a CUDA torch ------------------------------------------------------------
PY="${PYTHON:-python3}"
has_torch() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() or $DRY_RUN else 1)" 2>/dev/null; }
PIP_FROM=()
[ -n "$WHEELS" ] && PIP_FROM=(--no-index --find-links "$WHEELS")
if ! has_torch "$PY"; then
  echo "-- $PY has no torch that sees a GPU: making .venv-gpu-check with torch==2.14.1, torchvision==0.29.1"
  python3 -m venv --system-site-packages .venv-gpu-check || exit 1
  PY="$PWD/.venv-gpu-check/bin/python"
  timeout 600 "$PY" -m pip install -q "${PIP_FROM[@]}" torch==2.14.1 torchvision==0.29.1 \
    || { echo "FAILED: no torch could be installed (no index reachable? pass --wheels DIR)"; exit 1; }
fi
# The package's own dependencies, where pip can get them (no-op when present; failures only skip tests).
DEPS=$("$PY" - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if not re.match(r"(torch|torchvision)\b", d)))
EOF
)
# shellcheck disable=SC2086  # one word per requirement
timeout 60 "$PY" -m pip install -q --disable-pip-version-check --timeout 10 --retries 0 "${PIP_FROM[@]}" $DEPS pytest \
  >/dev/null 2>&1 || echo "-- some dependencies could not be installed; the tests that need them skip"
START=$(date +%s)  # the budget starts now
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('python', __import__('sys').version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda,
      '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

# --- 2. CUDA-marked tests -------------------------------------------------------------------
echo "== CUDA tests ($(left) s left)"
TEST_ENV=()
[ "$DRY_RUN" = 1 ] && TEST_ENV=(SDN_GPU_CHECK_DRY_RUN=1)
env "${TEST_ENV[@]}" timeout $(( $(left) * 45 / 100 )) \
  "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider -W ignore::DeprecationWarning
TESTS=$?
[ $TESTS = 124 ] && echo "FAILED: the tests ran out of time"

# --- 3. The 224-px benchmark ------------------------------------------------------------------
echo "== benchmark ($(left) s left)"
BENCH_ARGS=(--seconds $(( $(left) - 15 )))
[ "$DRY_RUN" = 1 ] && BENCH_ARGS+=(--dry-run)
[ -n "${OUT:-}" ] && BENCH_ARGS+=(--json "$OUT/gpu_step.json")
timeout $(( $(left) - 5 )) "$PY" benchmarks/gpu_step.py "${BENCH_ARGS[@]}"
BENCH=$?
[ $BENCH = 124 ] && echo "FAILED: the benchmark ran out of time"

echo "== done in $(( $(date +%s) - START )) s: tests exit $TESTS, benchmark exit $BENCH"
[ $TESTS = 0 ] && [ $BENCH != 0 ] && exit $BENCH
exit $TESTS
