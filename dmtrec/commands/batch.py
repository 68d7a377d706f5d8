"""``dmtrec batch lod|bake ASSET... --out DIR [options of the command]``: one command over many assets.

Each ``ASSET`` is a mesh file (``.obj`` or ``.glb``), a folder (its ``.obj`` and ``.glb`` files,
not recursive, in name order) or a list file (``.txt``: one path a line, relative to the list's
folder; blank lines and ``#`` comments skipped). Every asset runs the command's own code
(:mod:`dmtrec.commands.lod`, :mod:`dmtrec.commands.bake`) with the options given, plus
``--mesh ASSET --out DIR/<asset stem>``: a run folder per asset, resumed when the batch is run
again (finished assets are quick no-ops). ``-c`` config files work as for the command.

An asset that fails is reported in one line (``dmtrec batch bake: broken.obj: error: ...``) and
skipped; the batch goes on. At the end it writes ``DIR/summary.csv`` (one row per asset: status,
folder, seconds, error, the held-out scores) and ``DIR/contact_sheet.png`` (each finished asset's
own contact sheet, captioned), and exits with 1 if any asset failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from dmtrec import commands
from dmtrec.core.atomic import atomic_path, write_text_atomic
from dmtrec.io.contact_sheet import contact_sheet

from .config_files import parse_with_config_files

log = logging.getLogger(__name__)

HELP = "run lod or bake over many assets: dmtrec batch lod|bake ASSET_OR_FOLDER... --out DIR [options]"
BATCH_COMMANDS = ("lod", "bake")
MESH_SUFFIXES = (".obj", ".glb")
SHEET_TILE = 256
"""Height (px) of each asset's contact sheet in the batch's."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", choices=BATCH_COMMANDS, help="the command run on every asset")
    parser.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        metavar="ASSET... --out DIR [options]",
        help="mesh files, folders of them or list files (.txt), then --out DIR and the command's options "
        "(`dmtrec lod --help`, `dmtrec bake --help`; --mesh and --out are set per asset)",
    )


def split_argv(rest: Sequence[str]):
    """``(assets, out, options)``: the leading arguments up to the first option are assets,
    ``--out DIR`` is the batch's folder, the other options go to the command."""
    rest = list(rest)
    first = next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))
    assets, options, out = rest[:first], [], None
    i = first
    while i < len(rest):
        arg = rest[i]
        if arg == "--out" and i + 1 < len(rest):
            out, i = rest[i + 1], i + 2
            continue
        if arg.startswith("--out="):
            out = arg.split("=", 1)[1]
        elif arg == "--mesh" or arg.startswith("--mesh="):
            raise ValueError("--mesh: give the assets before the options (dmtrec batch CMD ASSET... --out DIR)")
        else:
            options.append(arg)
        i += 1
    if not assets:
        raise ValueError("no assets: dmtrec batch lod|bake ASSET_OR_FOLDER... --out DIR [options]")
    if out is None:
        raise ValueError("--out DIR is required (one run folder per asset is made in it)")
    return assets, Path(out), options


def expand_assets(items: Sequence[str]) -> List[Path]:
    """The mesh files named by ``items`` (files, folders, ``.txt`` lists), in order, each once.
    A path that does not exist is kept: its asset fails in its own line."""
    found: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        elif path.suffix.lower() == ".txt" and path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line).expanduser()
                    found.append(entry if entry.is_absolute() else path.parent / entry)
        else:
            found.append(path)
    seen, unique = set(), []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def folder_names(assets: Sequence[Path]) -> List[str]:
    """One run folder name per asset: its stem, ``stem-2``, ... when stems repeat."""
    names, used = [], set()
    for asset in assets:
        name, n = asset.stem or "asset", 1
        while name in used:
            n += 1
            name = f"{asset.stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if isinstance(exc, (ValueError, FileNotFoundError)) and line:
        return line
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _scores(command: str, report: dict) -> Dict[str, object]:
    """The summary columns of a finished asset, from its ``report.json``."""
    if command == "bake":
        scores = report.get("scores_held_out") or {}
        final = report.get("final_held_out") or {}
        return {
            "target": report.get("target"),
            "faces": report.get("faces"),
            "kept": report.get("kept"),
            "psnr_point_sampled": (scores.get("point_sampled") or {}).get("psnr"),
            "psnr_optimised": (scores.get("optimised") or {}).get("psnr"),
            "psnr_final": final.get("psnr"),
            "ssim_final": final.get("ssim"),
        }
    row: Dict[str, object] = {"triangles_in": (report.get("input") or {}).get("triangles")}
    for index, level in enumerate(report.get("levels") or []):
        row[f"lod{index}_triangles"] = level.get("triangles")
        # "final" is the written one: the start, the optimised level or its frozen-position retry ("kept").
        for kind, key in (("qem", "qem_only"), ("optimised", "optimised"), ("final", "final")):
            row[f"lod{index}_psnr_{kind}"] = (level.get(key) or {}).get("psnr")
        if "kept" in level:
            row[f"lod{index}_kept"] = level["kept"]
    return row


def _run_one(command: str, module, options: List[str], asset: Path, folder: Path) -> dict:
    args = parse_with_config_files(command, module, [*options, "--mesh", str(asset), "--out", str(folder)])
    module.main(args)
    return json.loads((folder / "report.json").read_text())


def write_summary(out: Path, rows: List[Dict[str, object]]) -> Path:
    """``out/summary.csv``: the union of the rows' columns, in first-seen order."""
    columns: List[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(out / "summary.csv", text.getvalue())
    return out / "summary.csv"


def write_sheet(out: Path, rows: List[Dict[str, object]]) -> Optional[Path]:
    """``out/contact_sheet.png``: the finished assets' own sheets, :data:`SHEET_TILE` px high, captioned."""
    tiles, captions = [], []
    for row in rows:
        sheet = Path(str(row["folder"])) / "contact_sheet.png"
        if row["status"] != "ok" or not sheet.is_file():
            continue
        with Image.open(sheet) as image:
            tiles.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        captions.append(str(row["asset_name"]))
    if not tiles:
        return None
    with atomic_path(out / "contact_sheet.png") as tmp:
        columns = min(4, len(tiles))
        contact_sheet(tiles, columns, SHEET_TILE, captions, resample="bicubic").save(tmp, format="PNG")
    return out / "contact_sheet.png"


def main(args: argparse.Namespace) -> int:
    command = args.command
    items, out, options = split_argv(args.rest)
    assets = expand_assets(items)
    if not assets:
        raise ValueError(f"no .obj or .glb assets in {' '.join(items)}")
    out.mkdir(parents=True, exist_ok=True)
    module = commands.load(command)
    # Options wrong for every asset stop the batch here, with the command's own message.
    parse_with_config_files(command, module, [*options, "--mesh", str(assets[0]), "--out", str(out / "_")])
    rows: List[Dict[str, object]] = []
    for index, (asset, name) in enumerate(zip(assets, folder_names(assets)), 1):
        folder = out / name
        print(f"[{index}/{len(assets)}] {command} {asset} -> {folder}", file=sys.stderr, flush=True)
        row: Dict[str, object] = {"asset_name": name, "asset": str(asset), "folder": str(folder)}
        start = time.perf_counter()
        try:
            report = _run_one(command, module, options, asset, folder)
        except Exception as exc:  # one asset's failure, whatever it is, never stops the batch
            error = _first_line(exc)
            print(f"dmtrec batch {command}: {asset}: error: {error}", file=sys.stderr, flush=True)
            row.update(status="error", seconds=round(time.perf_counter() - start, 1), error=error)
        else:
            row.update(status="ok", seconds=round(time.perf_counter() - start, 1), error="")
            row.update(_scores(command, report))
        rows.append(row)
    summary = write_summary(out, rows)
    sheet = write_sheet(out, rows)
    failed = sum(row["status"] != "ok" for row in rows)
    print(
        f"batch {command}: {len(rows) - failed} of {len(rows)} assets done, {failed} failed; "
        f"summary: {summary}" + (f", {sheet}" if sheet else "")
    )
    return 1 if failed else 0
