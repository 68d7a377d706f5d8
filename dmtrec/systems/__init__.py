"""Lightning systems: pass 1 (DMTet), pass 2 (fixed mesh) and the two-pass pipeline.

:class:`~dmtrec.systems.pipeline.ReconstructionSystem` is the LightningModule ``dmtrec fit``
trains; its config sections are in :mod:`~dmtrec.systems.config`, its image losses and schedules in
:mod:`dmtrec.metrics.image_losses` and :mod:`~dmtrec.systems.schedules`, the run folder in
:mod:`~dmtrec.systems.run` and the end-of-fit evaluation and export in
:mod:`~dmtrec.systems.callbacks` (files written by :mod:`dmtrec.systems.outputs`).
"""

from .callbacks import FinalizeRun
from .checkpoints import CheckpointError, load_checkpoint_file
from .evaluation import evaluate_run
from .outputs import write_outputs
from .pipeline import NonFiniteLossError, ReconstructionSystem
from .progress import PipelineProgressBar
from .run import RunConfig, resolve_run, start_fit

__all__ = [
    "CheckpointError",
    "FinalizeRun",
    "NonFiniteLossError",
    "PipelineProgressBar",
    "ReconstructionSystem",
    "RunConfig",
    "evaluate_run",
    "load_checkpoint_file",
    "resolve_run",
    "start_fit",
    "write_outputs",
]
