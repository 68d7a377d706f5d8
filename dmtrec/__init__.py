"""dmtrec: hybrid 3D reconstruction (DMTet + differentiable rasterization + split-sum PBR)."""

__version__ = "0.1.0"
