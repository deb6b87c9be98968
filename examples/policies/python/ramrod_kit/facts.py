"""Facts as plain dataclasses, with the fields of ``wit/policy.wit``: what
native tests build (the component gets componentize-py's own classes, with
the same attribute names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class Follower:
    id: int
    matched: Optional[int] = None
    lag_entries: int = 0
    snapshot_in_flight: Optional[int] = None


@dataclass
class LogFacts:
    now_ms: int = 0
    role: int = 0
    first_index: int = 1
    last_index: int = 0
    committed: int = 0
    applied: int = 0
    entries: int = 0
    bytes: int = 0
    append_rate: float = 0.0
    byte_rate: float = 0.0
    followers: List[Follower] = field(default_factory=list)
    disk_free_bytes: int = 100 << 30


@dataclass
class SnapshotFacts:
    last_index: Optional[int] = None
    age_ms: int = 0
    entries_since: int = 0
    bytes_since: int = 0
    chain_length: int = 0
    chain_bytes: int = 0
    base_bytes: int = 0
    state_keys: int = 0
    state_bytes: int = 0
    dirty_keys: int = 0
    last_build_ms: int = 0
    in_progress: bool = False


def leader(snapshot: Optional[int], since: int, first: int = 1) -> tuple[LogFacts, SnapshotFacts]:
    """A leader with a snapshot at ``snapshot`` and ``since`` entries after it."""
    last = (snapshot or 0) + since
    log = LogFacts(first_index=first, last_index=last, committed=last, applied=last,
                   entries=last - first + 1)
    return log, SnapshotFacts(last_index=snapshot, entries_since=since,
                              chain_length=1 if snapshot else 0)
