"""The ``dmtrec`` command (placeholder until the reconstruction pipeline lands)."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from dmtrec.render.raster import get_rasterizer

    rasterizer = get_rasterizer("auto")
    print(f"dmtrec: rasterizer backend {rasterizer.name} on {rasterizer.device}")
    print("dmtrec: `fit` arrives with the reconstruction pipeline; nothing to run yet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
