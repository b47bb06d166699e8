#!/usr/bin/env bash
# One short GPU lease, used in order of value: the CUDA tests, the GPU benchmark rows, then a
# deadline-sized training run (training/configs/synthetic_gpu.yaml) and its evaluation.
#
#   OUT=out/gpu_session DEADLINE_S=580 bash scripts/gpu_session.sh   # inside a 600 s command limit
#
# Runs with the machine's own python3 and packages (no venv: a lent GPU machine is bare and
# offline); needs runs/synthetic_medium/model.pt (the stage-2 model it starts from) and, for
# the same val/test pairs as the CPU tables, data/synthetic_small/pairs_{val,test}.json.
# Each stage is time-capped and failures do not stop later ones. What comes back under $OUT:
#   session.log, benchmarks.md (the benchmark rows, appended as on any machine), results.tgz
#   (metrics, pytest report, tensorboard, panels, logs) and model files of the last checkpoints.
set -uo pipefail
OUT=${OUT:-out/gpu_session}
DEADLINE_S=${DEADLINE_S:-580}          # the whole script, in seconds from its start
TRAIN_UNTIL_S=${TRAIN_UNTIL_S:-$((DEADLINE_S - 75))}   # evaluation and packing need the rest
PY=${PYTHON:-python3}
LOGS=runs/gpu_logs                     # packed into results.tgz: $OUT holds at most 8 files
mkdir -p "$OUT" "$LOGS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
stage() { echo; echo "=== [$(elapsed) s] $*"; }
vs() { $PY -m viewseg_core.cli "$@"; }
exec > >(tee -a "$OUT/session.log") 2>&1

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
torch.cuda.get_device_name(0))"
nproc

stage "data (background): synthetic_small (eval rooms), synthetic_large (960 training rooms), pairs"
(
  vs synth --out data/synthetic_small --scenes 30 --views 32 --size 80x60 --seed 0 --no-pairs --workers 4 --no-progress
  vs synth --out data/synthetic_large --scenes 960 --views 32 --size 80x60 --seed 2 --no-pairs --workers 12 --no-progress
  $PY - <<'EOF'
from training.config_io import load_config
from training.data import build_dataset
from training.train import TrainConfig
cfg = load_config(TrainConfig, "training/configs/synthetic_gpu.yaml")
for split in ("train", "val"):
    print(split, len(build_dataset(cfg.data, split)), "pairs")
EOF
) > "$LOGS/data.log" 2>&1 &
DATA_PID=$!

stage "CUDA tests (pytest -m gpu)"
timeout 240 $PY -m pytest -m gpu -q -p no:cacheprovider --junitxml="$LOGS/pytest_gpu.xml" \
  test/viewseg_core/test_compositing_cuda.py test/viewseg_core/model/test_fast_path.py

stage "benchmarks"
timeout 45 $PY benchmarks/bench_compositing.py
timeout 60 $PY benchmarks/bench_train_step.py --repeats 5 --ref-repeats 3
timeout 40 $PY benchmarks/bench_train_step.py --model small --size 80x60 --target-rays 1024 --source-rays 64 \
  --samples 32+32 --repeats 10 --ref-repeats 3
timeout 75 $PY benchmarks/bench_query.py --repeats 10 --ref-repeats 2
timeout 40 $PY benchmarks/bench_query.py --batch 4 --no-encoder --no-reference --repeats 5
cp docs/benchmarks.md "$OUT/benchmarks.md"

stage "waiting for data"
wait $DATA_PID; echo "data job exit $?"; tail -3 "$LOGS/data.log"

stage "training probe (30 steps)"
rm -rf runs/gpu_probe
timeout 120 vs train --config training/configs/synthetic_gpu.yaml run.out_dir=runs/gpu_probe run.max_steps=30 \
  run.log_every=10 run.image_every=0 run.checkpoint_every=1000
RAYS_PER_S=$($PY - <<'EOF'
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator("runs/gpu_probe/tensorboard"); ea.Reload()
print(ea.Scalars("perf/target_rays_per_s")[-1].value)
EOF
)
LEFT=$((TRAIN_UNTIL_S - $(elapsed) - 20)); [ "$LEFT" -lt 60 ] && LEFT=60
STEPS=$($PY -c "print(max(100, int(0.85 * ${RAYS_PER_S:-0} / 8192 * $LEFT) // 250 * 250))")
echo "probe: ${RAYS_PER_S:-?} target rays/s; ${LEFT} s left for training -> run.max_steps=$STEPS"

stage "training synthetic_gpu ($STEPS steps)"
rm -rf runs/synthetic_gpu
timeout $((LEFT + 30)) vs train --config training/configs/synthetic_gpu.yaml run.max_steps=$STEPS
echo "train exit $?"

stage "evaluation"
CKPTS=$(ls runs/synthetic_gpu/checkpoints/step_*.pt 2>/dev/null | sort -t_ -k3 -n | tail -4)
for c in $CKPTS; do
  n=$(basename "$c" .pt)
  timeout 30 vs eval --checkpoint "$c" --config training/configs/synthetic_small.yaml --split val \
    --out "runs/gpu_eval/val_$n" --max-examples 12 --panels 0 --device cuda > "$LOGS/eval_$n.log" 2>&1
  $PY -c "import json; m = json.load(open('runs/gpu_eval/val_$n/metrics.json'))['methods']['viewseg']; \
print('$n val', {k: round(m[k], 4) for k in ('dataset_miou', 'per_image_miou', 'depth_l1', 'depth_absrel')})" || true
done
LAST=$(echo "$CKPTS" | tail -1)
[ -n "$LAST" ] && timeout 45 vs eval --checkpoint "$LAST" --config training/configs/synthetic_small.yaml \
  --split test --out runs/gpu_eval/test_last --max-examples 48 --device cuda | tail -15

stage "packing"
i=0
for c in $(echo "$CKPTS" | tail -3); do
  $PY -c "import sys; from training.checkpoint import load_checkpoint; \
from viewseg_core.model.weights import model_from_checkpoint, save_model; \
save_model(model_from_checkpoint(load_checkpoint(sys.argv[1])['model'], sys.argv[1]), sys.argv[2])" \
    "$c" "$OUT/model_$(basename "$c")" && i=$((i + 1))
done
cp docs/benchmarks.md "$OUT/benchmarks.md"
tar czf "$OUT/results.tgz" --exclude='*.pt' runs/gpu_eval "$LOGS" runs/synthetic_gpu runs/gpu_probe
ls -la "$OUT"
stage "done"
