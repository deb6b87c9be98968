"""``entries`` in Python: snapshot every N applied entries, keep M entries
behind the snapshot. Decides exactly as ramrod's built-in ``entries``."""

from __future__ import annotations

from typing import Any

from . import FULL, INCREMENTAL, Config, ConfigError, Decision, purge_keeping


class Entries:
    def __init__(self, text: str) -> None:
        c = Config(text)
        self.snapshot_every = c.uint("snapshot_every", 10_000)
        self.keep_entries = c.uint("keep_entries", 5_000)
        self.kind = c.choice("kind", FULL, (FULL, INCREMENTAL))
        self.check_ms = c.uint("check_ms", 1_000, bits=32)
        self.retain_snapshots = c.optional_uint("retain_snapshots")
        c.done()
        if self.snapshot_every == 0:
            raise ConfigError("`snapshot_every` must be at least 1")
        if self.check_ms == 0:
            raise ConfigError("`check_ms` must be at least 1")

    def decide(self, log: Any, snap: Any) -> Decision:
        d = Decision(
            next_check_ms=self.check_ms,
            reason="",
            purge_up_to=purge_keeping(log, snap, self.keep_entries),
            retain_snapshots=self.retain_snapshots,
        )
        if snap.entries_since >= self.snapshot_every and not snap.in_progress:
            d.snapshot = FULL if snap.last_index is None else self.kind
            d.reason = f"{snap.entries_since} entries since the last snapshot >= {self.snapshot_every}"
        else:
            d.reason = f"{snap.entries_since} of {self.snapshot_every} entries"
        return d
