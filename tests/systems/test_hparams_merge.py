"""Lightning merges the model's and the datamodule's hyper-parameters for the loggers and stops
the run when one name holds two values; the two must keep distinct names."""

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.utilities import _log_hyperparams

from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.systems.pipeline import ReconstructionSystem


def test_model_and_data_backends_can_differ(tmp_path):
    model = ReconstructionSystem(rasterizer="torch")
    data = ReconDataModule(nerf_synthetic={"path": str(tmp_path)})
    trainer = Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", devices=1, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer._data_connector.attach_datamodule(model, datamodule=data)
    _log_hyperparams(trainer)  # raises "Error while merging hparams" on a clash


def test_no_hyperparameter_name_is_shared():
    model = ReconstructionSystem()
    data = ReconDataModule(kind="reference_mesh", reference_mesh={"mesh": "m.obj", "probe": "p.hdr"})
    assert not (model.hparams_initial.keys() & data.hparams_initial.keys())
