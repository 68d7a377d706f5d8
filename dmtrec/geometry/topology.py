"""Results that depend only on a mesh's index tensors, built once and reused while they are
unchanged (issue 28): pass 2 optimises positions on fixed faces, so its tangent-frame corner
groups, degenerate-face masks and edge lists are the same every step.

An entry is keyed on the *identity* and in-place *version* of its index tensors (plus a small
hashable extra key), so a new face tensor, or one modified in place (``load_state_dict``'s
``copy_``), rebuilds it; nothing is hashed per call. Only index-derived values (no autograd
graph) may be cached here, and what it returns is shared: callers must not modify it in place.
At most ``_KEPT`` entries are held (oldest dropped first); entries of freed index tensors go at
the next build.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Callable, Dict, Hashable, Iterator, Sequence, Tuple

from torch import Tensor

_KEPT = 32
_ENTRIES: Dict[Tuple, Tuple[Tuple[weakref.ref, ...], Tuple[int, ...], Any]] = {}
_ENABLED = [True]


@contextlib.contextmanager
def topology_cache(enabled: bool) -> Iterator[None]:
    """Turn the cache on or off inside the block (off: every call rebuilds what issue 28 made
    reusable; for benchmarks and tests)."""
    previous = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    try:
        yield
    finally:
        _ENABLED[0] = previous


def cached(
    name: str, tensors: Sequence[Tensor], build: Callable[[], Any], extra: Hashable = None, always: bool = False
) -> Any:
    """``build()``, or its earlier result for the same ``name``, index ``tensors`` (same objects,
    unmodified since) and ``extra``. ``always``: cached under ``topology_cache(False)`` too (the
    antialias edge structure, which was cached before issue 28)."""
    if not (_ENABLED[0] or always):
        return build()
    inference = any(t.is_inference() for t in tensors)
    if inference and not always:
        # Tensors made under torch.inference_mode (Lightning's test loop) keep no version
        # counter, so an in-place edit would go unseen: built afresh (they render once anyway).
        return build()
    key = (name, tuple(id(t) for t in tensors), extra)
    # The antialias structure of inference tensors is keyed on identity alone, as before issue 28.
    versions = tuple(-1 if t.is_inference() else t._version for t in tensors)
    entry = _ENTRIES.get(key)
    if entry is not None and all(r() is t for r, t in zip(entry[0], tensors)) and entry[1] == versions:
        return entry[2]
    value = build()
    for stale in [k for k, e in _ENTRIES.items() if any(r() is None for r in e[0])]:
        del _ENTRIES[stale]
    while len(_ENTRIES) >= _KEPT:
        del _ENTRIES[next(iter(_ENTRIES))]  # the oldest
    _ENTRIES[key] = (tuple(weakref.ref(t) for t in tensors), versions, value)
    return value
