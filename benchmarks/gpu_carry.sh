#!/usr/bin/env bash
# Run here before a GPU check: what benchmarks/gpu_check.sh needs on a lent GPU machine, which has PyTorch and
# JAX with CUDA but no TensorFlow, Keras, DVC or pydantic, no package registry and no ../shared:
#   .whl/       wheels of Keras and the pure-Python packages dlcompare's core needs there, at this venv's versions
#   .gpu-data/  the shared datasets' files under their own names: the 10k zip cut to 1,500 photos per class
#               (24 MB; the device call carries at most 64 MiB) and the PetImages fixture
# Both are ignored by git (.git/info/exclude); name them in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in /.whl/ /.gpu-data/; do grep -qxF "$folder" .git/info/exclude || echo "$folder" >> .git/info/exclude; done
wheels=()
for package in keras namex optree pydantic pydantic-core annotated-types typing-inspection; do
  wheels+=("$package==$(.venv/bin/python -c "from importlib.metadata import version; print(version('$package'))")")
done
rm -rf .whl && .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${wheels[@]}"
rm -rf .gpu-data && mkdir .gpu-data
.venv/bin/python - <<'PY'
import shutil, zipfile
source = "../shared/datasets/dogs-vs-cats-train-10k.zip"
with zipfile.ZipFile(source) as src, zipfile.ZipFile(".gpu-data/dogs-vs-cats-train-10k.zip", "w") as dst:
    for name in [f"train/{c}.{i}.jpg" for c in ("cat", "dog") for i in range(1500)]:
        dst.writestr(src.getinfo(name), src.read(name))
shutil.copy("../shared/datasets/petimages-mini.zip", ".gpu-data/")
PY
du -sh .whl .gpu-data
