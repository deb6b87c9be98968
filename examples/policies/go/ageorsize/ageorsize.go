// Package ageorsize is a policy that uses what Go makes easy: its limits
// are written the way people say them, parsed by the standard library
// ("max_age = \"10m\"", "max_log = \"256MiB\""). It snapshots when the
// newest snapshot is older than max_age and something changed, or when
// the log has grown by max_log since it; a first snapshot comes once
// anything was applied. It keeps a tail of keep entries (default: the
// entries appended in keep_for at the current rate, at least min_keep),
// so that followers a few seconds behind need no snapshot.
package ageorsize

import (
	"errors"
	"fmt"
	"math"
	"time"

	"ramrod.dev/policies/policy"
)

// AgeOrSize is the configured policy.
type AgeOrSize struct {
	MaxAge  time.Duration
	MaxLog  uint64
	KeepFor time.Duration
	MinKeep uint64
	Kind    policy.Kind
	Check   time.Duration
}

// Configure reads max_age ("10m"), max_log ("256MiB"), keep_for ("30s"),
// min_keep (1000), kind ("incremental") and check ("1s").
func Configure(cfg *policy.Config) (policy.Policy, error) {
	p := &AgeOrSize{
		MaxAge:  cfg.Duration("max_age", 10*time.Minute),
		MaxLog:  cfg.Bytes("max_log", 256<<20),
		KeepFor: cfg.Duration("keep_for", 30*time.Second),
		MinKeep: cfg.Uint("min_keep", 1_000),
		Kind:    cfg.Kind("kind", policy.Incremental),
		Check:   cfg.Duration("check", time.Second),
	}
	if p.MaxAge <= 0 || p.MaxLog == 0 {
		return nil, errors.New("`max_age` and `max_log` must be above zero")
	}
	if p.Check < time.Millisecond || p.Check > time.Hour {
		return nil, errors.New("`check` must be between 1ms and 1h")
	}
	return p, nil
}

// Decide implements policy.Policy.
func (p *AgeOrSize) Decide(log *policy.LogFacts, snap *policy.SnapshotFacts) policy.Decision {
	keep := max(p.MinKeep, uint64(math.Min(log.AppendRate*p.KeepFor.Seconds(), 1e12)))
	d := policy.Decision{
		PurgeUpTo:   policy.PurgeKeeping(log, snap, keep),
		NextCheckMs: uint32(p.Check.Milliseconds()),
	}
	age := time.Duration(snap.AgeMs) * time.Millisecond
	changed := snap.EntriesSince > 0
	switch {
	case snap.InProgress:
		d.Reason = "a snapshot is being built"
	case snap.LastIndex == nil && changed:
		d.Snapshot = policy.KindOf(policy.Full)
		d.Reason = "no snapshot yet"
	case snap.BytesSince >= p.MaxLog:
		d.Snapshot = policy.KindOf(p.Kind)
		d.Reason = fmt.Sprintf("%s of log since the snapshot >= %s", size(snap.BytesSince), size(p.MaxLog))
	case age >= p.MaxAge && changed:
		d.Snapshot = policy.KindOf(p.Kind)
		d.Reason = fmt.Sprintf("the snapshot is %s old >= %s", age.Round(time.Second), p.MaxAge)
	default:
		d.Reason = fmt.Sprintf("%s old, %s of log since it; keeping %d entries", age.Round(time.Second), size(snap.BytesSince), keep)
	}
	return d
}

func size(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}
