#!/usr/bin/env python
"""Download the third-party datasets of nvdiffrec's paper experiments (needs internet).

    python data/download_datasets.py --out /path/to/datasets            # everything
    python data/download_datasets.py --out D --only nerf_synthetic       # one dataset
    python data/download_datasets.py --out D --dry-run                   # print the plan only

Writes, under ``--out``:

- ``nerf_synthetic/<scene>/`` (chair, drums, ficus, hotdog, lego, materials, mic, ship):
  Mildenhall et al.'s NeRF-synthetic scenes (``transforms_{train,val,test}.json`` + RGBA PNGs),
  from the Google Drive archive ``nerf_synthetic.zip`` that nvdiffrec's script also uses;
- ``nerd/ethiopianHead_rescaled/``, ``nerd/moldGoldCape_rescaled/``: Boss et al.'s NeRD
  captures (LLFF layout: ``poses_bounds.npy``, ``images/``, ``masks/``) from their GitHub
  repositories, resized to 512 x 512 with area filtering as nvdiffrec's ``scale_images.py``
  does (the originals are kept in ``nerd/<name>/`` unless ``--delete-archives``).

Verification. A SHA-256 is checked wherever one is known: :data:`CHECKSUMS` (in this file)
or ``--sha256 NAME=HEX`` on the command line. No authoritative checksum was available when
this script was written, so :data:`CHECKSUMS` is empty rather than guessed; GitHub's
branch archives are regenerated on demand and are not guaranteed to be byte-stable anyway.
Every download therefore prints its SHA-256 (pin it with ``--sha256`` for later runs), and
every extracted dataset is checked by structure: the expected scenes, transforms files and
frame counts (100 train, 100 val, 200 test views per NeRF-synthetic scene), every referenced
image present; for NeRD, ``poses_bounds.npy`` of shape ``[N, 17]`` with N images and N masks.

Licences: each dataset keeps its authors' licence; see their pages before redistributing.
Needs only the Python standard library, numpy, pillow and torch (for the area resize).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class Archive:
    name: str  # key for CHECKSUMS and --sha256
    url: str
    filename: str


NERF_SYNTHETIC = Archive(
    "nerf_synthetic.zip",
    # Google Drive file of the NeRF authors (id as in nvdiffrec's download_datasets.py);
    # the usercontent endpoint with confirm=t skips the "cannot scan for viruses" page.
    "https://drive.usercontent.google.com/download?id=18JxhpWD-4ZmuFKLzKlAw-w5PpzZxXOcG&export=download&confirm=t",
    "nerf_synthetic.zip",
)
NERD = tuple(
    Archive(f"{repo}.zip", f"https://github.com/vork/{repo}/archive/refs/heads/master.zip", f"{repo}-master.zip")
    for repo in ("ethiopianHead", "moldGoldCape")
)
DATASETS = {"nerf_synthetic": (NERF_SYNTHETIC,), "nerd": NERD}

# SHA-256 of archives, by Archive.name. Only values from an authoritative source belong here.
CHECKSUMS: Dict[str, str] = {}

NERF_SCENES = ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship")
NERF_FRAMES = {"train": 100, "val": 100, "test": 200}
NERD_RESOLUTION = (512, 512)


class DownloadError(RuntimeError):
    """A download, checksum or structure check failed; the message says which file and why."""


def plan(datasets: Sequence[str], out: Path) -> List[str]:
    """Human-readable steps for ``datasets`` into ``out`` (what ``--dry-run`` prints)."""
    steps = []
    for dataset in datasets:
        for archive in DATASETS[dataset]:
            checksum = CHECKSUMS.get(archive.name)
            check = f"sha256 {checksum}" if checksum else "no known sha256: structure check only"
            steps.append(f"download {archive.url} -> {out / 'archives' / archive.filename} ({check})")
        if dataset == "nerf_synthetic":
            steps.append(f"extract nerf_synthetic/ -> {out / 'nerf_synthetic'}; check scenes {', '.join(NERF_SCENES)}")
        else:
            for archive in DATASETS[dataset]:
                stem = archive.name[: -len(".zip")]
                steps.append(
                    f"extract -> {out / 'nerd' / stem}; resize images and masks to "
                    f"{NERD_RESOLUTION[0]}x{NERD_RESOLUTION[1]} -> {out / 'nerd' / (stem + '_rescaled')}"
                )
    return steps


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(archive: Archive, folder: Path, checksums: Dict[str, str]) -> Path:
    """Fetch ``archive`` into ``folder`` (reusing a complete earlier download) and verify it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.filename
    if not target.is_file():
        partial = target.with_suffix(target.suffix + ".part")
        print(f"downloading {archive.url}", flush=True)
        try:
            with urllib.request.urlopen(archive.url, timeout=60) as response, open(partial, "wb") as fh:
                if response.headers.get_content_type() == "text/html":
                    raise DownloadError(
                        f"{archive.url}: got an HTML page instead of the archive (Google Drive quota "
                        f"or confirmation page?); download it by hand into {target}"
                    )
                shutil.copyfileobj(response, fh, length=1 << 20)
        except OSError as exc:
            raise DownloadError(f"{archive.url}: download failed ({exc})") from None
        partial.replace(target)
    digest = sha256_of(target)
    expected = checksums.get(archive.name)
    if expected and digest != expected.lower():
        raise DownloadError(f"{target}: sha256 {digest} does not match the expected {expected}; delete it and retry")
    print(f"{target}: sha256 {digest} ({'verified' if expected else 'no known checksum to compare'})")
    return target


def extract(zip_path: Path, dest: Path, strip_prefix: str) -> None:
    """Extract the members under ``strip_prefix`` into ``dest``, refusing paths that escape it."""
    dest = dest.resolve()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                if not member.filename.startswith(strip_prefix) or member.is_dir():
                    continue
                out = (dest / member.filename[len(strip_prefix) :]).resolve()
                if dest not in out.parents:
                    raise DownloadError(f"{zip_path}: member {member.filename!r} would be written outside {dest}")
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile:
        raise DownloadError(f"{zip_path}: not a valid zip archive; delete it and retry") from None


def check_nerf_synthetic(root: Path) -> None:
    """Every scene has its three transforms files, the expected frame counts and all images."""
    for scene in NERF_SCENES:
        for split, count in NERF_FRAMES.items():
            path = root / scene / f"transforms_{split}.json"
            if not path.is_file():
                raise DownloadError(f"{path}: missing after extraction")
            frames = json.loads(path.read_text())["frames"]
            if len(frames) != count:
                raise DownloadError(f"{path}: {len(frames)} frames, expected {count}")
            missing = [f["file_path"] for f in frames if not (root / scene / (f["file_path"] + ".png")).is_file()]
            if missing:
                raise DownloadError(f"{path}: {len(missing)} images missing, e.g. {missing[0]}.png")
    print(f"{root}: {len(NERF_SCENES)} scenes complete")


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def check_nerd(root: Path) -> int:
    """``poses_bounds.npy`` is ``[N, 17]`` and ``images/``, ``masks/`` hold N files each; returns N."""
    import numpy as np

    poses = root / "poses_bounds.npy"
    if not poses.is_file():
        raise DownloadError(f"{poses}: missing")
    shape = np.load(poses).shape
    if len(shape) != 2 or shape[1] != 17:
        raise DownloadError(f"{poses}: shape {shape}, expected [N, 17] (LLFF poses and bounds)")
    for folder in ("images", "masks"):
        found = len(_image_files(root / folder))
        if found != shape[0]:
            raise DownloadError(f"{root / folder}: {found} images for {shape[0]} poses")
    return shape[0]


def rescale_nerd(src: Path, dest: Path, resolution=NERD_RESOLUTION) -> None:
    """Area-resize ``images/`` and ``masks/`` to ``resolution`` (H, W) like nvdiffrec's scale_images.py."""
    import numpy as np
    import torch
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "poses_bounds.npy", dest / "poses_bounds.npy")
    for folder in ("images", "masks"):
        (dest / folder).mkdir(exist_ok=True)
        for file in _image_files(src / folder):
            with Image.open(file) as img:
                pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
            chw = (pixels[..., None] if pixels.ndim == 2 else pixels).permute(2, 0, 1)[None]
            small = torch.nn.functional.interpolate(chw, size=resolution, mode="area")[0].permute(1, 2, 0)
            out = np.clip(np.rint(small.numpy() * 255.0), 0, 255).astype(np.uint8)
            Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out).save(dest / folder / file.name, quality=95)
    check_nerd(dest)


def fetch(datasets: Sequence[str], out: Path, checksums: Dict[str, str], delete_archives: bool) -> None:
    archives = out / "archives"
    for dataset in datasets:
        for archive in DATASETS[dataset]:
            zip_path = download(archive, archives, checksums)
            if dataset == "nerf_synthetic":
                extract(zip_path, out / "nerf_synthetic", "nerf_synthetic/")
                check_nerf_synthetic(out / "nerf_synthetic")
            else:
                stem = archive.name[: -len(".zip")]
                extract(zip_path, out / "nerd" / stem, f"{stem}-master/")
                views = check_nerd(out / "nerd" / stem)
                rescale_nerd(out / "nerd" / stem, out / "nerd" / f"{stem}_rescaled")
                print(f"{out / 'nerd' / (stem + '_rescaled')}: {views} views at {NERD_RESOLUTION}")
                if delete_archives:
                    shutil.rmtree(out / "nerd" / stem)
            if delete_archives:
                zip_path.unlink()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to hold the datasets (created if missing)")
    parser.add_argument(
        "--only",
        choices=sorted(DATASETS),
        action="append",
        help="download only this dataset (repeatable); default: all",
    )
    parser.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help=f"expected SHA-256 of an archive; NAME is one of "
        f"{', '.join(a.name for group in DATASETS.values() for a in group)}",
    )
    parser.add_argument("--delete-archives", action="store_true", help="remove zips and NeRD originals afterwards")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; no network access")
    args = parser.parse_args(argv)
    known = {a.name for group in DATASETS.values() for a in group}
    args.checksums = dict(CHECKSUMS)
    for item in args.sha256:
        name, sep, digest = item.partition("=")
        if not sep or name not in known or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            parser.error(f"--sha256 {item!r}: expected NAME=<64 hex digits> with NAME in {sorted(known)}")
        args.checksums[name] = digest.lower()
    args.datasets = args.only or sorted(DATASETS)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        print("\n".join(plan(args.datasets, args.out)))
        return 0
    try:
        fetch(args.datasets, args.out, args.checksums, args.delete_archives)
    except DownloadError as exc:
        print(f"download_datasets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
