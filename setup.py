from setuptools import find_packages, setup

setup(
    name="dmtrec",
    version="0.1.0",
    description="Hybrid 3D reconstruction with DMTet geometry, differentiable rasterization and split-sum PBR shading",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["dmtrec", "dmtrec.*"]),
    include_package_data=True,
    # the page `dmtrec view` serves; the shading models' GLSL twins
    package_data={"dmtrec.commands": ["view_page/*"], "dmtrec.render.shaders": ["*.glsl", "*.hlsl"]},
    install_requires=[
        "torch>=2.6",  # weights-only checkpoint loading by default
        "pytorch-lightning>=2.2",
        "jsonargparse[signatures]>=4.27",
        "numpy>=1.23",
        "pillow>=9.0",
        "xatlas>=0.0.9",
        "wandb>=0.16",
        "pyyaml>=6.0",
    ],
    extras_require={
        # NVIDIA's nvdiffrast 0.3.3 sources, compiled on first use with the CUDA toolkit.
        # Non-commercial licence: optional, dmtrec imports and tests without it.
        "cuda": ["diffrp-nvdiffrast>=0.3.3"],
        # dmtrec lod: QEM decimation (MIT), closest-surface lookup, FLIP metric (BSD)
        "lod": ["fast-simplification>=0.1.7", "scipy>=1.10", "flip-evaluator>=1.5"],
        # experiments/benchmarks/lod.py's anchor: MeshLab's texture-preserving quadric edge collapse (GPL, run
        # in a child process, never imported by dmtrec)
        "benchmark": ["pymeshlab>=2022.2"],
        "colmap": ["pycolmap>=3.11"],  # `dmtrec poses`: structure-from-motion on the CPU (wheels for py3.9-3.13)
        # Mitsuba 3: path-traced ground-truth datasets (its scalar_rgb variant needs no GPU or LLVM), and
        # the comparison in experiments/benchmarks/raster_scaling.py (llvm_ad_rgb: an LLVM >= 16).
        "pathtrace": ["mitsuba>=3.5"],
        "dev": [
            "pytest>=7.0",
            "pygltflib>=1.15",
            "trimesh>=4.0",
            "scipy>=1.10",
            "ruff>=0.6",
            "mitsuba>=3.5",
            "fast-simplification>=0.1.7",
            "pycolmap>=3.11",
        ],
    },
    entry_points={"console_scripts": ["dmtrec=dmtrec.cli:main"]},
)
