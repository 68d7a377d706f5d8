"""Lightning systems: pass 1 (DMTet), pass 2 (fixed mesh) and the two-pass pipeline; the levels of detail.

:class:`~dmtrec.systems.pipeline.ReconstructionSystem` is the LightningModule ``dmtrec fit``
trains; its config sections are in :mod:`~dmtrec.systems.config`, its image losses and schedules in
:mod:`dmtrec.metrics.image_losses` and :mod:`~dmtrec.systems.schedules`, its validation grids in
:mod:`~dmtrec.systems.grids`. :class:`~dmtrec.systems.lod.LodSystem` is ``dmtrec lod``'s.
The run folder, the Trainer and the end-of-fit evaluation and export around them are
:mod:`dmtrec.runs`'.
"""

from .pipeline import NonFiniteLossError, ReconstructionSystem

__all__ = ["NonFiniteLossError", "ReconstructionSystem"]
