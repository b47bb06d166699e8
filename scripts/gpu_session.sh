#!/usr/bin/env bash
# A short GPU lease, used in order of value. Stages (any subset, in this order):
#   fused     issue 19, the fused Triton field: its CUDA tests, bench_query at 320x240 from 4 sources
#             (paper and fast presets; fast path with the PyTorch field vs the fused field, and the
#             reference path), the RGB-D query and depth guide rows (bench_splat, bench_free_path:
#             seconds each), bench_fused_field (launch sweep, both poolings, --record), and
#             bench_train_step as in `checks` (capped at 9.5 min in all; estimated, not yet run)
#   checks    the CUDA tests and the GPU benchmark rows (2.5 min on an H200)
#   cuda      the CUDA tests only (pytest -m gpu; under a minute)
#   train     stages 3 and 4 of docs/results.md (about 3 min each on an H200)
#   continue  the shipped model (stage 4: the committed checkpoints/demo.pt, or $CONTINUE_FROM) trained
#             $CONTINUE_STEPS more steps (default 4000, about 6 min on an H200)
#   eval      val scores of the checkpoints at $VAL_STEPS, test scores of each run's last step
#   pose      issue 18's pose-noise target at the shipped model's scale: checkpoints/demo.pt continued
#             $POSE_STEPS steps (default 2000) twice from one seed, with true source poses and with every
#             source off by sigma ~ U(0, 2) x 10 deg / 10 cm (the recipe that was most robust at the
#             CPU's stage-1 scale, docs/results.md "Noisy source poses"); each scored at 0, 2, 5 and
#             10 deg on the test split, then compared by scripts/compare_studies.py (estimated 8 min on
#             an H100/H200 at the measured 11.3 steps/s; not yet run on one). The same steps, tiny, on
#             the 2-core CPU (data/synthetic_medium linked in as data/synthetic_large: 5.6 min):
#               STAGES=pose POSE_STEPS=2 DEVICE=cpu TIME_SCALE=20 TEST_EXAMPLES=2 PYTHON=.venv/bin/python \
#                 OUT=out/pose_smoke bash scripts/gpu_session.sh
#
#   STAGES="checks train eval" OUT=out/gpu_session bash scripts/gpu_session.sh
#   STAGES=fused OUT=out/gpu_session bash scripts/gpu_session.sh      # one 10-minute call
#   STAGES="cuda continue eval" CONTINUE_STEPS=3000 OUT=out/gpu_session bash scripts/gpu_session.sh
#   STAGES=pose OUT=out/gpu_session bash scripts/gpu_session.sh         # one 10-minute call
#
# The second line is sized for one 10-minute call on an H100/H200 (estimated from the measured
# parts, not yet run as one: data 1-2 min beside the CUDA tests, 3000 steps at the measured
# 11.3 steps/s = 4.5 min, evaluation and packing about 1.5 min). The same steps, tiny, on
# any machine (run on the 2-core CPU from a clean clone, data/synthetic_large linked in: 4.5 min):
#   STAGES="continue eval" CONTINUE_STEPS=2 DEVICE=cpu TIME_SCALE=20 TEST_EXAMPLES=2 VAL_STEPS=2 \
#     PYTHON=.venv/bin/python OUT=out/gpu_smoke bash scripts/gpu_session.sh
#
# It uses the machine's own python3 and packages (a lent GPU machine is bare and offline: no
# venv). `train` needs runs/synthetic_medium/model.pt (stage 2); `continue` needs nothing
# beyond the checkout. For the same val/test pairs as the CPU tables, carry
# data/synthetic_small/pairs_{val,test}.json. Each step is time-capped and a failure does
# not stop the later ones. $OUT receives session.log, benchmarks.md (the benchmark rows,
# appended to docs/benchmarks.md as on any machine), results.tgz (metrics, pytest report,
# tensorboard, logs) and model files of the last checkpoints (`viewseg export-model`).
set -uo pipefail
STAGES=${STAGES:-checks train eval}
OUT=${OUT:-out/gpu_session}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}                 # DEVICE=cpu: a slow smoke run of the same steps on any machine
TIME_SCALE=${TIME_SCALE:-1}            # multiplies the train/eval time caps (a CPU smoke run wants ~20)
TEST_EXAMPLES=${TEST_EXAMPLES:-0}      # test targets per run's last checkpoint (0: the whole split)
VIEWSEG=("$PY" -m viewseg_core.cli)    # an array, not a function: `timeout` runs programs only
LOGS=runs/gpu_logs                     # packed into results.tgz: $OUT may hold 8 files at most
STAGE3=(run.out_dir=runs/synthetic_gpu run.max_steps=2000)
STAGE4=(run.init_from=runs/synthetic_gpu/model.pt run.out_dir=runs/synthetic_gpu2 run.max_steps=2000
        optim.lr=2.5e-4 optim.warmup_steps=50 run.image_every=0 run.seed=4)
CONTINUE_STEPS=${CONTINUE_STEPS:-4000}
POSE_STEPS=${POSE_STEPS:-2000}
POSE_CONTINUATION=(run.init_from=checkpoints/demo.pt run.max_steps=$POSE_STEPS run.checkpoint_every=$POSE_STEPS
        optim.lr=2.5e-4 optim.warmup_steps=50 run.image_every=0 run.seed=6)
CONTINUATION=(run.init_from=${CONTINUE_FROM:-checkpoints/demo.pt} run.out_dir=runs/synthetic_gpu3
        run.max_steps=$CONTINUE_STEPS run.checkpoint_every=500 optim.lr=2.5e-4 optim.warmup_steps=50
        run.image_every=0 run.seed=5)
VAL_STEPS=${VAL_STEPS:-1000|1500|2000|3000|4000|5000|6000}
mkdir -p "$OUT" "$LOGS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START )) s] $*"; }
cap() { echo $(( $1 * TIME_SCALE )); }   # a time cap in seconds, scaled
cuda_tests() {
  stage "CUDA tests (pytest -m gpu)"
  timeout "${1:-240}" $PY -m pytest -m gpu -q -p no:cacheprovider --junitxml="$LOGS/pytest_gpu.xml" \
    test/viewseg_core/test_compositing_cuda.py test/viewseg_core/model/test_fast_path.py \
    test/viewseg_core/model/test_fused_field.py
}
wants() { [[ " $STAGES " == *" $1 "* ]]; }
exec > >(tee -a "$OUT/session.log") 2>&1

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
torch.cuda.get_device_name(0))"

if wants train || wants continue || wants eval || wants pose; then
  stage "data (background): synthetic_small (eval rooms), synthetic_large (960 training rooms), pairs"
  (
    "${VIEWSEG[@]}" synth --out data/synthetic_small --scenes 30 --views 32 --size 80x60 --seed 0 --no-pairs --legacy-names \
      --workers 4 --no-progress
    [ -f data/synthetic_large/splits.json ] || \
      "${VIEWSEG[@]}" synth --out data/synthetic_large --scenes 960 --views 32 --size 80x60 --seed 2 --no-pairs --legacy-names \
        --workers 12 --no-progress
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
fi

if wants fused; then
  # Order of value: correctness of the compiled kernel, then the query rows the wiring is
  # for, then the kernel's own sweep; the training step (PyTorch field) last.
  cuda_tests 130
  stage "fused field: bench_query 320x240, 4 sources, paper + fast, PyTorch field vs fused field vs reference"
  timeout 150 $PY benchmarks/bench_query.py --size 320x240 --presets paper,fast --field reference,fused \
    --repeats 5 --ref-repeats 2
  stage "RGB-D query (issue 15's GPU target: rgbd preset at 320x240 <= 15 ms): demo_rgbd.pt, PyTorch vs fused field, maps per query vs kept (the node's cache, issue 19 item 3)"
  timeout 120 $PY benchmarks/bench_query.py --model checkpoints/demo_rgbd.pt --size 320x240 --presets rgbd,fast \
    --source-depth sensor --field reference,fused --prepared query,kept --no-reference --repeats 10
  stage "RGB-D depth guide on the GPU: the adaptive splat (host syncs) and the node's free path check"
  timeout 40 $PY benchmarks/bench_splat.py --device cuda --repeats 10
  timeout 40 $PY benchmarks/bench_free_path.py --device cuda --repeats 10
  stage "fused field: bench_fused_field (sweep, mean and mean_var, recorded)"
  timeout 200 $PY benchmarks/bench_fused_field.py --pooling both --record --json "$LOGS/bench_fused_field.json"
  stage "training step (the PyTorch field: no fused backward)"
  timeout 60 $PY benchmarks/bench_train_step.py --repeats 5 --ref-repeats 3
  timeout 40 $PY benchmarks/bench_train_step.py --model small --size 80x60 --target-rays 1024 --source-rays 64 \
    --samples 32+32 --repeats 10 --ref-repeats 3
  cp docs/benchmarks.md "$OUT/benchmarks.md"
fi

if wants checks; then
  wants fused || cuda_tests
  stage "benchmarks"
  timeout 45 $PY benchmarks/bench_compositing.py
  timeout 60 $PY benchmarks/bench_train_step.py --repeats 5 --ref-repeats 3
  timeout 40 $PY benchmarks/bench_train_step.py --model small --size 80x60 --target-rays 1024 --source-rays 64 \
    --samples 32+32 --repeats 10 --ref-repeats 3
  timeout 75 $PY benchmarks/bench_query.py --repeats 10 --ref-repeats 2
  timeout 40 $PY benchmarks/bench_query.py --batch 4 --no-encoder --no-reference --repeats 5
  cp docs/benchmarks.md "$OUT/benchmarks.md"
fi

if wants cuda && ! wants checks && ! wants fused; then
  cuda_tests
fi

if [ -n "${DATA_PID:-}" ]; then
  stage "waiting for data"
  wait "$DATA_PID"; echo "data job exit $?"; tail -3 "$LOGS/data.log"
fi

if wants train; then
  stage "stage 3: synthetic_gpu.yaml from stage 2"
  rm -rf runs/synthetic_gpu
  timeout "$(cap 300)" "${VIEWSEG[@]}" train --config training/configs/synthetic_gpu.yaml "${STAGE3[@]}"
  echo "stage 3 exit $?"
  stage "stage 4: continuation at half the rate"
  rm -rf runs/synthetic_gpu2
  timeout "$(cap 300)" "${VIEWSEG[@]}" train --config training/configs/synthetic_gpu.yaml "${STAGE4[@]}"
  echo "stage 4 exit $?"
fi

if wants continue; then
  stage "continuation: $CONTINUE_STEPS more steps from ${CONTINUE_FROM:-checkpoints/demo.pt}"
  rm -rf runs/synthetic_gpu3
  timeout "$(cap $(( CONTINUE_STEPS / 9 + 180 )))" "${VIEWSEG[@]}" train --config training/configs/synthetic_gpu.yaml "${CONTINUATION[@]}"
  echo "continuation exit $?"
fi

if wants eval; then
  stage "evaluation on the val rooms (checkpoint choice) and the test rooms"
  RUNS=$(ls -d runs/synthetic_gpu runs/synthetic_gpu2 runs/synthetic_gpu3 2>/dev/null)
  for run in $RUNS; do
    for c in $(ls "$run"/checkpoints/step_*.pt 2>/dev/null | grep -E "step_($VAL_STEPS)\.pt"); do
      name=$(basename "$run")_$(basename "$c" .pt)
      timeout "$(cap 30)" "${VIEWSEG[@]}" eval --checkpoint "$c" --config training/configs/synthetic_small.yaml --split val \
        --out "runs/gpu_eval/val_$name" --max-examples 12 --panels 0 --device "$DEVICE" > "$LOGS/eval_$name.log" 2>&1
      $PY -c "import json; m = json.load(open('runs/gpu_eval/val_$name/metrics.json'))['methods']['viewseg']; \
print('$name val', {k: round(m[k], 4) for k in ('dataset_miou', 'per_image_miou', 'depth_l1', 'depth_absrel')})" || true
    done
    LAST=$(ls "$run"/checkpoints/step_*.pt 2>/dev/null | sort -V | tail -1)
    [ -n "$LAST" ] && timeout "$(cap 120)" "${VIEWSEG[@]}" eval --checkpoint "$LAST" --config training/configs/synthetic_small.yaml \
      --split test --out "runs/gpu_eval/test_$(basename "$run")" --max-examples "$TEST_EXAMPLES" --panels 0 --device "$DEVICE" | tail -12
  done
  stage "packing: model files of each run's last two checkpoints (at most 5)"
  PACKED=0
  for run in $RUNS; do
    for c in $(ls "$run"/checkpoints/step_*.pt 2>/dev/null | sort -V | tail -2); do
      [ "$PACKED" -lt 5 ] || break
      timeout "$(cap 60)" "${VIEWSEG[@]}" export-model --checkpoint "$c" --out "$OUT/model_$(basename "$run")_$(basename "$c")" \
        && PACKED=$(( PACKED + 1 ))
    done
  done
fi
if wants pose; then
  for arm in clean spread; do
    stage "pose noise ($arm): $POSE_STEPS more steps from checkpoints/demo.pt, then scored at 0, 2, 5, 10 deg / cm"
    NOISE=()
    [ "$arm" = spread ] && NOISE=("data.pose_noise=[10.0, 10.0]" data.pose_noise_spread=uniform)
    rm -rf "runs/pose_gpu_$arm"
    timeout "$(cap $(( POSE_STEPS / 9 + 120 )))" "${VIEWSEG[@]}" train --config training/configs/synthetic_gpu.yaml \
      "${POSE_CONTINUATION[@]}" run.out_dir="runs/pose_gpu_$arm" "${NOISE[@]}"
    echo "pose $arm training exit $?"
    timeout "$(cap 150)" "${VIEWSEG[@]}" eval --checkpoint "runs/pose_gpu_$arm/model.pt" \
      --config training/configs/synthetic_small.yaml --split test --pose-noise 0,0 2,2 5,5 10,10 \
      --out "runs/pose_gpu_$arm/eval_noise" --max-examples "$TEST_EXAMPLES" --panels 0 --device "$DEVICE" | tail -8
  done
  stage "pose noise: the spread model's drops against the clean model's (the target: at most half at 5 deg)"
  for measure in miou per_image_miou pacc; do
    $PY scripts/compare_studies.py --measure "$measure" --reference runs/pose_gpu_clean/eval_noise/study_pose_noise.json \
      --other runs/pose_gpu_spread/eval_noise/study_pose_noise.json
  done
fi
cp docs/benchmarks.md "$OUT/benchmarks.md"
tar czf "$OUT/results.tgz" --exclude='*.pt' "$LOGS" $(ls -d runs/gpu_eval runs/synthetic_gpu runs/synthetic_gpu2 runs/synthetic_gpu3 runs/pose_gpu_clean runs/pose_gpu_spread 2>/dev/null)
ls -la "$OUT"
stage "done"
