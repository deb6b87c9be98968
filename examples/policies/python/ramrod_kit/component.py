"""Turns a policy class into the component's ``policy`` export (imported
only by a policy's ``app.py``, built by componentize-py, where the
generated ``wit_world`` bindings exist)."""

from __future__ import annotations

from typing import Any, Callable

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from . import FULL, ConfigError


def export(name: str, make: Callable[[str], Any]) -> type:
    """The export class for the policy ``name``; ``make(config_text)``
    builds the configured policy (raising ConfigError)."""

    class Policy(exports.Policy):
        policy: Any = None

        def name(self) -> str:
            return name

        def configure(self, config: str) -> None:
            try:
                Policy.policy = make(config)
            except ConfigError as e:
                raise Err(str(e)) from None

        def decide(self, log: types.LogFacts, snapshot: types.SnapshotFacts) -> types.Decision:
            d = Policy.policy.decide(log, snapshot)
            kind = None
            if d.snapshot is not None:
                kind = types.SnapshotKind.FULL if d.snapshot == FULL else types.SnapshotKind.INCREMENTAL
            return types.Decision(
                snapshot=kind,
                purge_up_to=d.purge_up_to,
                retain_snapshots=d.retain_snapshots,
                next_check_ms=d.next_check_ms,
                reason=d.reason,
            )

    return Policy
