// Package policy is the Go side of ramrod's compaction-policy contract
// (wit/policy.wit): the facts a policy is given, the decision it returns,
// and Register, which makes a policy the component's export. Built for
// GOOS=wasip1 with -buildmode=c-shared, abi_wasip1.go provides the
// component exports (the canonical ABI by hand: wit-bindgen's Go generator
// needs modules no proxy here serves); natively the package is plain Go,
// so a policy's logic is tested with `go test`.
//
// A policy is pure: it sees only what it is given (the time is LogFacts.NowMs).
package policy

import "errors"

// Role is the Raft role of the node asking.
type Role uint8

// The roles.
const (
	Leader Role = iota
	Follower
	Candidate
	Learner
)

// Kind is a snapshot kind.
type Kind uint8

// The kinds.
const (
	// Incremental writes the keys changed since the last snapshot.
	Incremental Kind = iota
	// Full writes the whole state as a new base.
	Full
)

// FollowerFacts is a follower's replication progress, seen by the leader.
type FollowerFacts struct {
	ID               uint64
	Matched          *uint64
	LagEntries       uint64
	SnapshotInFlight *uint64
}

// LogFacts is what the log holds now.
type LogFacts struct {
	NowMs                 uint64
	Role                  Role
	FirstIndex, LastIndex uint64
	Committed, Applied    uint64
	Entries, Bytes        uint64
	AppendRate, ByteRate  float64
	Followers             []FollowerFacts
	DiskFreeBytes         uint64
}

// SnapshotFacts is what the snapshot chain holds now.
type SnapshotFacts struct {
	LastIndex                          *uint64
	AgeMs, EntriesSince, BytesSince    uint64
	ChainLength                        uint32
	ChainBytes, BaseBytes, StateKeys   uint64
	StateBytes, DirtyKeys, LastBuildMs uint64
	InProgress                         bool
}

// Decision is what a policy wants done; the host clamps it to what is safe.
type Decision struct {
	// Snapshot: build one of this kind now (nil: none).
	Snapshot *Kind
	// PurgeUpTo: purge the log up to and including this index (nil: none).
	PurgeUpTo *uint64
	// RetainSnapshots: keep this many snapshots (nil: the host's setting).
	RetainSnapshots *uint32
	// NextCheckMs: ask again after this long.
	NextCheckMs uint32
	// Reason: why, in a few words.
	Reason string
}

// Policy decides.
type Policy interface {
	Decide(log *LogFacts, snap *SnapshotFacts) Decision
}

// Configure makes a policy from its configuration, or says which key or
// value is wrong.
type Configure func(cfg *Config) (Policy, error)

var registered struct {
	name      string
	configure Configure
	policy    Policy
}

// Register makes the policy named name, built by configure, the one the
// component exports. Call it from an init function of package main.
func Register(name string, configure Configure) {
	registered.name = name
	registered.configure = configure
}

// Name is the registered policy's name.
func Name() string { return registered.name }

// Load configures the registered policy from TOML text (what the host's
// configure call does).
func Load(toml string) error {
	if registered.configure == nil {
		return errors.New("no policy is registered")
	}
	cfg, err := ParseConfig(toml)
	if err != nil {
		return err
	}
	p, err := registered.configure(cfg)
	// A value that does not parse, or a key nothing reads, says more than
	// what the policy made of the defaults.
	if uerr := cfg.Unused(); uerr != nil {
		return uerr
	}
	if err != nil {
		return err
	}
	registered.policy = p
	return nil
}

// PurgeKeeping is the index to purge up to so that keep entries stay in
// the log behind the newest snapshot, within what the host allows (the
// snapshot, the applied index, a follower's snapshot in flight); nil when
// that purges nothing. (The Rust SDK's purge_keeping.)
func PurgeKeeping(log *LogFacts, snap *SnapshotFacts, keep uint64) *uint64 {
	if snap.LastIndex == nil {
		return nil
	}
	limit := *snap.LastIndex
	if log.Applied < limit {
		limit = log.Applied
	}
	for _, f := range log.Followers {
		if f.SnapshotInFlight != nil && *f.SnapshotInFlight < limit {
			limit = *f.SnapshotInFlight
		}
	}
	if *snap.LastIndex < keep {
		return nil
	}
	target := min(*snap.LastIndex-keep, limit)
	if target < log.FirstIndex {
		return nil
	}
	return &target
}

// KindOf is a pointer to k (for Decision.Snapshot).
func KindOf(k Kind) *Kind { return &k }
