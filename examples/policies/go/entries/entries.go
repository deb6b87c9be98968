// Package entries is ramrod's `entries` policy in Go: snapshot every N
// applied entries, keep M entries behind the snapshot. It decides exactly
// as the built-in `entries`.
package entries

import (
	"errors"
	"fmt"

	"ramrod.dev/policies/policy"
)

// Entries is the configured policy.
type Entries struct {
	SnapshotEvery, KeepEntries uint64
	Kind                       policy.Kind
	CheckMs                    uint32
	RetainSnapshots            *uint32
}

// Configure reads snapshot_every (10000), keep_entries (5000), kind
// ("full"), check_ms (1000) and retain_snapshots (unset).
func Configure(cfg *policy.Config) (policy.Policy, error) {
	e := &Entries{
		SnapshotEvery: cfg.Uint("snapshot_every", 10_000),
		KeepEntries:   cfg.Uint("keep_entries", 5_000),
		Kind:          cfg.Kind("kind", policy.Full),
		CheckMs:       cfg.Uint32("check_ms", 1_000),
	}
	if r := cfg.Uint32("retain_snapshots", 0); r != 0 {
		e.RetainSnapshots = &r
	}
	if e.SnapshotEvery == 0 {
		return nil, errors.New("`snapshot_every` must be at least 1")
	}
	if e.CheckMs == 0 {
		return nil, errors.New("`check_ms` must be at least 1")
	}
	return e, nil
}

// Decide implements policy.Policy.
func (e *Entries) Decide(log *policy.LogFacts, snap *policy.SnapshotFacts) policy.Decision {
	d := policy.Decision{
		PurgeUpTo:       policy.PurgeKeeping(log, snap, e.KeepEntries),
		RetainSnapshots: e.RetainSnapshots,
		NextCheckMs:     e.CheckMs,
	}
	if snap.EntriesSince >= e.SnapshotEvery && !snap.InProgress {
		kind := e.Kind
		if snap.LastIndex == nil {
			kind = policy.Full
		}
		d.Snapshot = policy.KindOf(kind)
		d.Reason = fmt.Sprintf("%d entries since the last snapshot >= %d", snap.EntriesSince, e.SnapshotEvery)
	} else {
		d.Reason = fmt.Sprintf("%d of %d entries", snap.EntriesSince, e.SnapshotEvery)
	}
	return d
}
