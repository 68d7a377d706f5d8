"""Run xatlas on a mesh in a separate process: ``python _xatlas_worker.py in.npz out.npz``.

Run as a script (not as part of the package) so that it imports only numpy and xatlas:
xatlas may segfault or hang, and the parent process must survive either.
"""

import sys

import numpy as np
import xatlas


def main(src: str, dst: str) -> None:
    with np.load(src) as data:
        positions, faces = data["positions"], data["faces"]
    vmapping, indices, uvs = xatlas.parametrize(positions, faces)
    with open(dst, "wb") as fh:  # the parent reads dst only after a zero exit status
        np.savez(fh, vmapping=vmapping, indices=indices, uvs=uvs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
