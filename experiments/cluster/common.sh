# Sourced by the sbatch templates in this folder (from the repository root, $SLURM_SUBMIT_DIR).
#
# run_scene SCENE [EXTRA_DMTREC_ARGS...]
#   SCENE is a config under experiments/configs without ".yaml", e.g. nerf_synthetic/lego.
#   The run folder is $DMTREC_OUTPUT_ROOT/$DMTREC_RUN_NAME (defaults: outputs/, SCENE with "/"
#   turned into "-"), so a requeued or resubmitted job finds its own checkpoints and wandb run.
#   The command runs under $DMTREC_LAUNCHER (default srun: the Python process becomes a job
#   step, receives --signal and Lightning detects SLURM; set it empty outside SLURM).
#   When $WANDB_RUN_ID is set (a wandb sweep agent started us), it becomes the run folder's
#   wandb id, so that the run logs into the agent's sweep run.
#
# Resuming. The sbatch files ask SLURM for SIGUSR1 90 s before the time limit; Lightning's
# SLURMEnvironment (auto_requeue) then saves <run folder>/hpc_ckpt_<n>.ckpt and runs
# `scontrol requeue`. Lightning loads that file on its own only when no --ckpt_path is given,
# while `--ckpt_path last` reads checkpoints/last.ckpt (written every run.checkpoint_every
# iterations). So: resume from `last`, unless an hpc checkpoint is newer than last.ckpt, in which
# case resume from that file and lose nothing since the last periodic checkpoint.

resume_checkpoint() {
    local run_dir="$1" newest_hpc
    newest_hpc=$(ls -t "$run_dir"/hpc_ckpt_*.ckpt 2>/dev/null | head -n 1)
    if [[ -n "$newest_hpc" && "$newest_hpc" -nt "$run_dir/checkpoints/last.ckpt" ]]; then
        echo "$newest_hpc"
    else
        echo last
    fi
}

run_scene() {
    local scene="$1"
    shift
    local config="experiments/configs/${scene}.yaml"
    if [[ ! -f "$config" ]]; then
        echo "run_scene: $config: config not found (submit from the repository root)" >&2
        return 2
    fi
    local name="${DMTREC_RUN_NAME:-${scene//\//-}}"
    local output_root="${DMTREC_OUTPUT_ROOT:-outputs}"
    local ckpt
    ckpt=$(resume_checkpoint "$output_root/$name")
    if [[ -n "${WANDB_RUN_ID:-}" ]]; then
        mkdir -p "$output_root/$name"
        echo "$WANDB_RUN_ID" > "$output_root/$name/wandb_id"
    fi
    echo "run_scene: $config -> $output_root/$name (resume: $ckpt, job ${SLURM_JOB_ID:-none}, restart ${SLURM_RESTART_COUNT:-0})"
    # shellcheck disable=SC2086  # an empty launcher must vanish
    ${DMTREC_LAUNCHER-srun} dmtrec fit -c "$config" --run.name "$name" --run.output_root "$output_root" \
        --ckpt_path "$ckpt" "$@"
}
