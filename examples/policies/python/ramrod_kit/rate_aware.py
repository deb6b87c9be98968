"""``rate-aware`` in Python: what Python makes easy, a policy that keeps a
little history and does statistics over it.

It keeps the log within a byte budget by looking ahead: it snapshots when
the log appended since the last snapshot, plus what the current byte rate
adds over ``horizon_s`` seconds (the time a build takes, say), would pass
``log_budget_bytes``; never more often than every ``min_interval_s``
(unless nothing was snapshotted yet). The tail it keeps for followers is
``keep_s`` seconds of appends at the *median* of the recent append rates it
has seen (one burst does not blow the tail up, one lull does not cut it).
An incremental snapshot when few keys changed, a full one when many did
(``full_when_dirty`` of the state's keys)."""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

from . import FULL, INCREMENTAL, Config, ConfigError, Decision, purge_keeping


class RateAware:
    def __init__(self, text: str) -> None:
        c = Config(text)
        self.budget = c.uint("log_budget_bytes", 256 << 20, at_least=1)
        self.horizon_s = c.number("horizon_s", 30.0)
        self.min_interval_s = c.number("min_interval_s", 10.0)
        self.keep_s = c.number("keep_s", 10.0)
        self.min_keep = c.uint("min_keep", 1_000)
        self.full_when_dirty = c.number("full_when_dirty", 0.5)
        self.check_ms = c.uint("check_ms", 1_000, at_least=1, bits=32)
        self.history = c.uint("history", 32, at_least=1)
        c.done()
        if self.full_when_dirty > 1.0:
            raise ConfigError("`full_when_dirty`: expected a fraction from 0 to 1")
        self.rates: deque[float] = deque(maxlen=self.history)

    def decide(self, log: Any, snap: Any) -> Decision:
        self.rates.append(log.append_rate)
        rate = statistics.median(self.rates)
        keep = max(self.min_keep, int(rate * self.keep_s))
        d = Decision(next_check_ms=self.check_ms, reason="",
                     purge_up_to=purge_keeping(log, snap, keep))
        projected = snap.bytes_since + log.byte_rate * self.horizon_s
        age_s = snap.age_ms / 1000
        if snap.in_progress:
            d.reason = "a snapshot is being built"
        elif snap.last_index is None and snap.entries_since > 0:
            d.snapshot, d.reason = FULL, "no snapshot yet"
        elif projected >= self.budget and age_s >= self.min_interval_s and snap.entries_since > 0:
            dirty = snap.dirty_keys / snap.state_keys if snap.state_keys else 1.0
            d.snapshot = FULL if dirty >= self.full_when_dirty else INCREMENTAL
            d.reason = (f"{projected / 2**20:.1f} MiB projected in {self.horizon_s:g} s "
                        f">= {self.budget / 2**20:.1f} MiB; {dirty:.0%} of keys changed")
        else:
            d.reason = (f"{projected / 2**20:.1f} of {self.budget / 2**20:.1f} MiB projected; "
                        f"keeping {keep} entries (median rate {rate:.0f}/s)")
        return d
