"""ramrod compaction policies in Python: the logic side.

A policy here is a plain class with ``configure(text)`` and
``decide(log, snap)``. ``log`` and ``snap`` carry the fields of
``wit/policy.wit``'s ``log-facts`` and ``snapshot-facts`` (snake_case
attributes: the bindings componentize-py generates at build time, or
``ramrod_kit.facts`` in native tests); ``decide`` returns a
:class:`Decision`. ``ramrod_kit.component`` turns such a class into the
component's export; nothing else here imports the generated bindings, so
the logic runs under a plain ``python3`` for tests.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, Optional

FULL = "full"
INCREMENTAL = "incremental"


@dataclass
class Decision:
    """What a policy wants done; the host clamps it to what is safe."""

    next_check_ms: int
    reason: str
    snapshot: Optional[str] = None  # FULL, INCREMENTAL or None
    purge_up_to: Optional[int] = None
    retain_snapshots: Optional[int] = None


def purge_keeping(log: Any, snap: Any, keep: int) -> Optional[int]:
    """The index to purge up to so that ``keep`` entries stay behind the
    newest snapshot, within what the host allows (the snapshot, the applied
    index, a follower's snapshot in flight); None when that purges nothing.
    (The Rust SDK's ``purge_keeping``.)"""
    if snap.last_index is None:
        return None
    limit = min(snap.last_index, log.applied)
    for f in log.followers:
        if f.snapshot_in_flight is not None:
            limit = min(limit, f.snapshot_in_flight)
    if snap.last_index < keep:
        return None
    target = min(snap.last_index - keep, limit)
    return target if target >= log.first_index else None


class ConfigError(ValueError):
    """A config the policy refuses; the message names the key."""


class Config:
    """A policy's TOML config: typed getters, and :meth:`done` refuses the
    keys no getter asked for."""

    def __init__(self, text: str) -> None:
        try:
            self._values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"the config is not TOML: {e}") from None
        self._used: set[str] = set()

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self._used.add(key)
        if key not in self._values:
            return default
        v = self._values[key]
        if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
            raise ConfigError(f"`{key}`: expected {what}, not {v!r}")
        return v

    def uint(self, key: str, default: int, *, at_least: int = 0, bits: int = 64) -> int:
        v = self._get(key, default, (int,), "an integer")
        if not at_least <= v < 2**bits:
            raise ConfigError(f"`{key}`: expected an integer from {at_least} to {2**bits - 1}, not {v}")
        return v

    def number(self, key: str, default: float, *, at_least: float = 0.0) -> float:
        v = float(self._get(key, default, (int, float), "a number"))
        if v < at_least:
            raise ConfigError(f"`{key}`: expected at least {at_least}, not {v}")
        return v

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self._get(key, default, (str,), "a string")
        if v not in choices:
            raise ConfigError(f"`{key}`: expected one of {', '.join(map(repr, choices))}, not {v!r}")
        return v

    def optional_uint(self, key: str, *, bits: int = 32) -> Optional[int]:
        if key not in self._values:
            self._used.add(key)
            return None
        return self.uint(key, 0, bits=bits)

    def done(self) -> None:
        unknown = sorted(set(self._values) - self._used)
        if unknown:
            raise ConfigError(
                f"unknown key `{unknown[0]}` (known: {', '.join(sorted(self._used))})"
            )
