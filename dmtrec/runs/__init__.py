"""A run's plumbing around the Lightning systems: its folder, its Trainer and what it leaves.

* :mod:`~dmtrec.runs.folder`: ``run:`` (:class:`~dmtrec.runs.folder.RunConfig`), the run folder,
  its wandb id, and opening it for training (:func:`~dmtrec.runs.folder.start_fit`); one writer
  per folder (:mod:`~dmtrec.runs.lock`, ``run.lock``).
* :mod:`~dmtrec.runs.trainer`: :class:`~dmtrec.runs.trainer.RunSession`, the one Trainer builder
  of ``dmtrec fit`` and ``dmtrec lod`` (resume with ``--ckpt_path last``, overwrite refusal,
  logger, checkpoints, progress bar, deterministic CPU algorithms); :mod:`~dmtrec.runs.ddp`, the
  ``dmtrec_ddp`` strategy; :mod:`~dmtrec.runs.logger` (wandb offline, or CSV);
  :mod:`~dmtrec.runs.checkpoints` (crash-safe, weights-only); :mod:`~dmtrec.runs.progress`.
* :mod:`~dmtrec.runs.command_run`: the run folder of ``dmtrec lod`` and ``dmtrec bake`` (``--out``
  is the run; the same command resumes it, another configuration is refused).
* :mod:`~dmtrec.runs.callbacks`: the fit's datamodule told which pass trains, and the final
  evaluation and export (:mod:`~dmtrec.runs.outputs`); :mod:`~dmtrec.runs.inspection`, the
  dataset drawn at fit start; :mod:`~dmtrec.runs.evaluation`, ``dmtrec eval`` of a run folder.

It sits above :mod:`dmtrec.systems` (the LightningModules, which never import it) and below the
commands.
"""
