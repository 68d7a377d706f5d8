"""Checks of command-line options, run before any work, each failure one line naming the option."""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from dmtrec.render.light import EnvironmentLight


class OptionError(ValueError):
    """An option's value is out of its range; the message starts with the option's name."""


def at_least(pairs: Iterable[Tuple[str, Optional[float]]], minimum: float) -> None:
    """Every ``(option, value)`` with a value (None: unset) is ``>= minimum``."""
    for option, value in pairs:
        if value is not None and value < minimum:
            raise OptionError(f"{option}: must be >= {minimum:g}, got {value}")


def probe_res(value: int, option: str = "--probe-res") -> None:
    """A probe's cube-map face size: what :class:`EnvironmentLight` takes (a power of two >= 32)."""
    smallest = 2 * EnvironmentLight.MIN_RES
    if value < smallest or value & (value - 1):
        raise OptionError(f"{option}: must be a power of two >= {smallest} (cube-map face size), got {value}")
