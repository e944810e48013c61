#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU; run from the repository root:
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]
#
# 1. the tests that need CUDA (the rest of the suite runs anywhere): a CUDA model and checkpoint,
#    single runs and batches on cuda against the CPU (hand-written and generic step), the analyses with device="cuda" against the
#    CPU (1e-9 relative, same verdicts);
# 2. benchmarks/bench_many.py --gpu-only: one p = 97 run in ms/step, p = 23 x 512 and p = 97 x 64
#    seeds in seed-steps/s, each next to its target;
# 3. benchmarks/bench_large_p.py --device cuda at p = 97 (diagnose and ablate, heavy passes on the
#    GPU) and, for comparison in the same run, --device cpu;
# 4. benchmarks/bench_transformer_many.py --preset nanda --device cuda: Nanda et al.'s transformer at
#    p = 113 (30 % of pairs), 8 seeds stacked in one process against one run, 500 steps each (the
#    preset's 50,000 steps take 100x the time printed).
#
# It needs the project's dependencies importable by python3. Where they are not installed (a bare
# GPU image), put their wheels in .whl/ first: they are installed into /tmp/site. The project itself
# is read from this checkout (PYTHONPATH), so nothing is built. Logs go to LOG_DIR (default
# /tmp/gpu_check), one file per part; the exit code is that of the tests.
set -uo pipefail
LOG=${1:-/tmp/gpu_check}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  nproc; } 2>&1 | tee "$LOG/machine.txt"

python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/core/test_runtime.py tests/training/test_many.py \
    tests/training/test_training_engine.py tests/core/test_analysis_device.py -k "cuda or gpu" -rs 2>&1 | tee "$LOG/tests.txt"
rc=${PIPESTATUS[0]}

python3 benchmarks/bench_many.py --gpu-only 2>&1 | tee "$LOG/bench_many.txt"
python3 benchmarks/bench_large_p.py --p 97 --device cuda 2>&1 | tee "$LOG/bench_large_p_cuda.txt"
python3 benchmarks/bench_large_p.py --p 97 --device cpu 2>&1 | tee "$LOG/bench_large_p_cpu.txt"
python3 benchmarks/bench_transformer_many.py --preset nanda --seeds 8 --steps 500 --repeats 1 --device cuda \
    2>&1 | tee "$LOG/bench_transformer_many.txt"
exit "$rc"
