#!/bin/bash
# One run of the reproduction sweep, as `wandb agent` calls it (see sweep_reproduction.yaml):
#   experiments/cluster/sweep_run.sh scene=nerf_synthetic/lego seed=1
# Runs from the repository root; inside an sbatch job set DMTREC_LAUNCHER=srun.
set -euo pipefail
scene="" seed=""
for arg in "$@"; do
    case "$arg" in
        scene=*) scene="${arg#scene=}" ;;
        seed=*) seed="${arg#seed=}" ;;
        *) echo "sweep_run.sh: unexpected argument '$arg' (expected scene=... seed=...)" >&2; exit 2 ;;
    esac
done
if [[ -z "$scene" || -z "$seed" ]]; then
    echo "sweep_run.sh: need scene=... and seed=..." >&2
    exit 2
fi
source "$(dirname "$0")/common.sh"
export DMTREC_RUN_NAME="sweep-${scene//\//-}-seed${seed}"
DMTREC_LAUNCHER="${DMTREC_LAUNCHER-}" run_scene "$scene" --seed_everything "$seed" \
    --run.wandb online --run.project "${WANDB_PROJECT:-dmtrec}"
