"""Lightning systems: pass 1 (DMTet), pass 2 (fixed mesh) and the two-pass pipeline.

:class:`~dmtrec.systems.pipeline.ReconstructionSystem` is the LightningModule ``dmtrec fit``
trains; its config sections are in :mod:`~dmtrec.systems.config`, the losses and schedules in
:mod:`~dmtrec.systems.losses` and :mod:`~dmtrec.systems.schedules`, the run folder in
:mod:`~dmtrec.systems.run` and the end-of-fit evaluation and export in
:mod:`~dmtrec.systems.callbacks` (files written by :mod:`dmtrec.systems.outputs`).
"""
