#!/usr/bin/env bash
# The whole GPU check in one unattended call (issue 17): offline install of the carried wheels,
# nvdiffrast's compile, the GPU test suite with the parity tests' worst differences, the
# benchmarks at nvdiffrec's settings, a short Spot fit on nvdiffrast, and OUT_DIR/gpu_report.md
# with every figure and the device name. Each step is time-boxed, so one slow step cannot eat
# the rest; nothing is downloaded. Total budget about 8 minutes on one H100/H200-class GPU.
#
#   bash experiments/gpu/run_all.sh OUT_DIR              # on the GPU machine (.whl/ beside the repo root)
#   bash experiments/gpu/run_all.sh OUT_DIR --dry-run    # every step on the CPU, tiny settings (CI)
#
# Arguments in either order; anything else (an unknown option, a second or a missing OUT_DIR)
# prints the usage line and exits 2 before any step runs or any folder is made.
set -uo pipefail
usage="usage: run_all.sh OUT_DIR [--dry-run]"
refuse() { echo "run_all.sh: $1" >&2; echo "$usage" >&2; exit 2; }
out=""
dry=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry=1 ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) refuse "unknown option '$arg'" ;;
        *) [[ -n "$out" ]] && refuse "one OUT_DIR only, got '$out' and '$arg'"; out="$arg" ;;
    esac
done
[[ -n "$out" ]] || refuse "OUT_DIR missing"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled WANDB_SILENT=true
: > "$out/steps.tsv"

# step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, record status + time.
step() {
    local name="$1" limit="$2"; shift 2
    local start end status word
    start=$(date +%s%N)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    status=$?
    end=$(date +%s%N)
    case $status in
        0) word=ok ;;
        124|137) word="timeout" ;;
        *) word="failed($status)" ;;
    esac
    printf '%s\t%s\t%d\n' "$name" "$word" $(( (end - start) / 1000000 )) >> "$out/steps.tsv"
    echo "   $word"
}

python3 - > "$out/device.txt" 2>&1 <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", "CUDA", torch.version.cuda)
else:
    print("device cpu (no CUDA)")
PY

if (( dry )); then
    step install 60 bash -c "ls .whl/*.whl 2>/dev/null | wc -l | xargs echo 'dry run: uses the installed packages; wheels present:'"
    step nvdiffrast_compile 60 echo "dry run: no CUDA, nothing to compile"
    step gpu_tests 300 python3 -m pytest -q -m gpu --co -p no:cacheprovider tests/raster
    step bench_raster 300 python3 experiments/benchmarks/raster.py --device cpu --configs cpu --repeats 1 --threads 1
    step bench_shading 300 python3 experiments/benchmarks/shading.py --settings quickstart --device cpu --repeats 1 --threads 1
    step bench_dmtet 300 python3 experiments/benchmarks/dmtet.py --device cpu --resolutions 32 --inits sphere --repeats 1 --threads 1
    step bench_fit_speed 300 python3 experiments/benchmarks/fit_speed.py --device cpu --res 32 --batch 1 --grid 32 \
        --texture-res 64 --light-res 32 --hash-table 12 --iters 1 --warmup 1 --views 4 --probe-res 32 --rasterizer torch
    step fit_spot 300 python3 -m dmtrec.cli fit -c experiments/configs/quickstart.yaml --run.output_root "$out/runs" \
        --run.wandb disabled --model.iters_dmtet 4 --model.iters_mesh 2 --data.resolution "[32, 32]" \
        --model.material.texture_res 32 --data.reference_mesh.probe_res 32 --model.metric_samples 500 --trainer.enable_progress_bar false \
        --data.val_views 1 --data.test_views 1 --data.val_batch_size 1
else
    site="$(mktemp -d /tmp/dmtrec-site.XXXX)"
    step install 120 bash -c "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target '$site' .whl/*.whl && ls '$site'"
    export PYTHONPATH="$repo:$site"
    step nvdiffrast_compile 240 python3 -c "
import time, torch, nvdiffrast.torch as dr
t = time.time(); dr.RasterizeCudaContext(device='cuda'); torch.cuda.synchronize()
print(f'nvdiffrast plugin ready in {time.time() - t:.1f} s')"
    step gpu_tests 150 python3 -m pytest -q -m gpu -s -p no:cacheprovider tests
    step bench_raster 90 python3 experiments/benchmarks/raster.py --device cuda --configs medium --repeats 5
    step bench_shading 60 python3 experiments/benchmarks/shading.py --settings nvdiffrec --device cuda --repeats 3
    step bench_dmtet 45 python3 experiments/benchmarks/dmtet.py --device cuda --resolutions 64,128 --repeats 3
    # nvdiffrec's lego settings: 800 x 800, batch 8, grid 128 (a Spot dataset stands in for lego)
    step bench_fit_speed 120 python3 experiments/benchmarks/fit_speed.py --device cuda --res 800 --batch 8 --grid 128 \
        --iters 10 --warmup 3 --rasterizer nvdiffrast
    step fit_spot 120 python3 -m dmtrec.cli fit -c experiments/configs/quickstart.yaml --run.output_root "$out/runs" \
        --run.wandb disabled --trainer.accelerator gpu --model.rasterizer nvdiffrast --data.reference_mesh.rasterizer nvdiffrast \
        --data.reference_mesh.device cuda --trainer.enable_progress_bar false
fi
python3 experiments/gpu/report.py "$out" $( (( dry )) && echo --dry-run )
echo "report: $out/gpu_report.md"
