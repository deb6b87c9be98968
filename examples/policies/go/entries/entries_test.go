package entries

import (
	"strings"
	"testing"

	"ramrod.dev/policies/policy"
)

func load(t *testing.T, toml string) *Entries {
	t.Helper()
	cfg, err := policy.ParseConfig(toml)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Configure(cfg)
	if err == nil {
		err = cfg.Unused()
	}
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Entries)
}

func facts(snapshot, since uint64) (*policy.LogFacts, *policy.SnapshotFacts) {
	log := &policy.LogFacts{FirstIndex: 1, LastIndex: snapshot + since, Committed: snapshot + since, Applied: snapshot + since}
	snap := &policy.SnapshotFacts{EntriesSince: since}
	if snapshot > 0 {
		snap.LastIndex = &snapshot
	}
	return log, snap
}

func TestDecisions(t *testing.T) {
	e := load(t, "snapshot_every = 1_000\nkeep_entries = 100\nkind = \"incremental\"\ncheck_ms = 250")
	d := e.Decide(facts(5000, 999))
	if d.Snapshot != nil || d.PurgeUpTo == nil || *d.PurgeUpTo != 4900 || d.NextCheckMs != 250 || d.Reason != "999 of 1000 entries" {
		t.Fatalf("short of the threshold: %+v", d)
	}
	d = e.Decide(facts(5000, 1000))
	if d.Snapshot == nil || *d.Snapshot != policy.Incremental || d.Reason != "1000 entries since the last snapshot >= 1000" {
		t.Fatalf("at the threshold: %+v", d)
	}
	d = e.Decide(facts(0, 5000))
	if d.Snapshot == nil || *d.Snapshot != policy.Full || d.PurgeUpTo != nil {
		t.Fatalf("no snapshot yet: %+v", d)
	}
	log, snap := facts(5000, 2000)
	snap.InProgress = true
	if d = e.Decide(log, snap); d.Snapshot != nil {
		t.Fatalf("a build in progress: %+v", d)
	}
	// A follower receiving a snapshot holds the purge back.
	log, snap = facts(5000, 10)
	inFlight := uint64(3000)
	log.Followers = []policy.FollowerFacts{{ID: 2, SnapshotInFlight: &inFlight}}
	if d = e.Decide(log, snap); d.PurgeUpTo == nil || *d.PurgeUpTo != 3000 {
		t.Fatalf("a snapshot in flight: %+v", d)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for toml, key := range map[string]string{
		"snapshot_evry = 3":       "snapshot_evry",
		"snapshot_every = 0":      "snapshot_every",
		"kind = \"huge\"":         "kind",
		"check_ms = 99999999999":  "check_ms",
		"keep_entries = \"many\"": "keep_entries",
	} {
		cfg, err := policy.ParseConfig(toml)
		if err == nil {
			_, err = Configure(cfg)
			if uerr := cfg.Unused(); uerr != nil {
				err = uerr
			}
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v", toml, err)
		}
	}
}
