#!/usr/bin/env bash
# TensorBoard as a new user first sees it (issue 16): the four first commands -- a default run, a 2-seed grpo_toy
# multirun, the toy Optuna sweep and a short CTA run -- then TensorBoard over their outputs (run names from
# `python -m aegir.tb`), photographed in headless Chromium: Time Series, Custom Scalars and HParams.
#
#   scripts/tb_screenshots.sh [SHOTS_DIR]          # default SHOTS_DIR: shots/ (PNG files, one per page)
#
# Environment: PYTHON (default .venv/bin/python), AEGIR_OUTPUT_ROOT (where the runs go, default outputs/),
# CHROMIUM (default: chromium on PATH, else /usr/bin/chromium), PORT (default 6123), SKIP_RUNS=1 to photograph
# runs that already exist; extra overrides per command (e.g. smaller budgets on a loaded machine): DEFAULT_ARGS,
# GRPO_ARGS, SWEEP_ARGS (e.g. "trainer.max_steps=30": run overrides after the spec), CTA_ARGS (default
# "trainer.max_steps=300": the short CTA run, 6 evaluations).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
export AEGIR_OUTPUT_ROOT=${AEGIR_OUTPUT_ROOT:-outputs}
SHOTS=${1:-shots}
PORT=${PORT:-6123}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || echo /usr/bin/chromium)}
export HF_HUB_OFFLINE=1

if [ -z "${SKIP_RUNS:-}" ]; then
  # shellcheck disable=SC2086  # the *_ARGS are word lists
  "$PYTHON" run.py trainer.enable_progress_bar=false ${DEFAULT_ARGS:-}
  "$PYTHON" run.py -m +experiment=grpo_toy seed=42,123 trainer.enable_progress_bar=false ${GRPO_ARGS:-}
  "$PYTHON" -m aegir.sweep sweeps/toy_grid.yaml "sweep.output_dir=$AEGIR_OUTPUT_ROOT/sweeps/toy_grid" ${SWEEP_ARGS:-}
  "$PYTHON" run.py +experiment=cta_from_scratch trainer.enable_progress_bar=false ${CTA_ARGS:-trainer.max_steps=300}
fi

mkdir -p "$SHOTS"
"$PYTHON" -m aegir.tb "$AEGIR_OUTPUT_ROOT" --port "$PORT" --host 127.0.0.1 >"$SHOTS/tensorboard.log" 2>&1 &
TB_PID=$!
trap 'kill "$TB_PID" 2>/dev/null || true' EXIT
for _ in $(seq 120); do  # TensorBoard answers once it has started; then give it time to load every run
  if "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/data/runs', timeout=2)" \
      2>/dev/null; then break; fi
  sleep 1
done
sleep 10

for page in timeseries custom_scalars hparams; do
  profile=$(mktemp -d)
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1600,1000 \
    --virtual-time-budget=15000 --screenshot="$SHOTS/$page.png" "http://127.0.0.1:$PORT/#$page" 2>/dev/null
  rm -rf "$profile"
  echo "$SHOTS/$page.png"
done
