#!/usr/bin/env bash
# The GPU check of docs/fairness.md, one prepared command for a lent GPU machine (after benchmarks/gpu_carry.sh
# here, and a device call that carries .whl and .gpu-data):
#   1. the equivalence tests in strict float32; there the reference is PyTorch, and TensorFlow and Keras on
#      TensorFlow are skipped as not installed;
#   2. benchmarks/bench.py for pytorch, jax, keras-jax and keras-torch at train.precision float32, then tf32,
#      each with its peak GPU memory (the keras-io tutorials need TensorFlow and are left out there).
# Logs and the two bench JSON files go to $OUT (the device tool brings them back), else /tmp/gpu-check.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site DLCOMPARE_DATASETS=$PWD/.gpu-data PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pytest tests/test_equivalence.py -n0 -q -rs -p no:cacheprovider 2>&1 | tee "$out/equivalence.log"
for precision in float32 tf32; do
  python3 benchmarks/bench.py --precision "$precision" --frameworks pytorch,jax,keras-jax,keras-torch \
    --source .gpu-data/dogs-vs-cats-train-10k.zip --out "$out" 2>&1 | tee "$out/bench-$precision.log"
done
