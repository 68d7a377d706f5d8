#!/usr/bin/env bash
# Download, on a machine with pip access, the CPython 3.12 manylinux x86-64 wheels that a bare
# CUDA machine with PyTorch and Lightning lacks, into the git-ignored .whl/ of the repository
# (run_all.sh installs them offline into a temporary site folder). No dependencies are pulled:
# the list below names every package the GPU kit needs beyond such a machine's own.
#   bash experiments/gpu/fetch_wheels.sh [DEST]        (default: <repo>/.whl)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${1:-$repo/.whl}"
mkdir -p "$dest"
PACKAGES=(
    # dmtrec's runtime needs the GPU image lacks
    xatlas "jsonargparse[signatures]" docstring-parser typeshed-client importlib-resources
    # nvdiffrast 0.3.3 sources (compiled on first use with the machine's CUDA toolkit)
    diffrp-nvdiffrast
    # the GPU tests read and check GLB files
    trimesh pygltflib dataclasses-json marshmallow typing-inspect mypy-extensions deprecated
)
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for package in "${PACKAGES[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$dest" "$package" \
        || python3 -m pip download --quiet --no-deps --no-binary=:none: -d "$dest" "$package"
done
# pip cannot tell two versions of one package apart at install time: keep the newest of each.
python3 - "$dest" <<'PY'
import re, sys
from pathlib import Path
seen = {}
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name = re.split(r"-\d", wheel.name, 1)[0].lower().replace("_", "-")
    if name in seen:
        seen[name].unlink()
    seen[name] = wheel
print(f"{len(seen)} wheels in {sys.argv[1]}: " + ", ".join(sorted(seen)))
PY
