package ageorsize

import (
	"strings"
	"testing"
	"time"

	"ramrod.dev/policies/policy"
)

func load(t *testing.T, toml string) *AgeOrSize {
	t.Helper()
	cfg, err := policy.ParseConfig(toml)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Configure(cfg)
	if uerr := cfg.Unused(); uerr != nil {
		err = uerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return p.(*AgeOrSize)
}

func TestConfigReadsHumanUnits(t *testing.T) {
	p := load(t, "max_age = \"90s\"\nmax_log = \"64MiB\"\nkeep_for = \"1m\"\nmin_keep = 10\nkind = \"full\"\ncheck = \"250ms\"")
	if p.MaxAge != 90*time.Second || p.MaxLog != 64<<20 || p.KeepFor != time.Minute || p.Kind != policy.Full || p.Check != 250*time.Millisecond {
		t.Fatalf("%+v", p)
	}
	for toml, key := range map[string]string{
		"max_age = \"soon\"":  "max_age",
		"max_log = \"lots\"":  "max_log",
		"max_ag = \"1m\"":     "max_ag",
		"check = \"2h\"":      "check",
		"kind = \"sideways\"": "kind",
	} {
		cfg, _ := policy.ParseConfig(toml)
		_, err := Configure(cfg)
		if uerr := cfg.Unused(); uerr != nil {
			err = uerr
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v", toml, err)
		}
	}
}

func TestDecisions(t *testing.T) {
	p := load(t, "max_age = \"1m\"\nmax_log = \"1MiB\"\nkeep_for = \"10s\"\nmin_keep = 100")
	at := uint64(10_000)
	log := &policy.LogFacts{FirstIndex: 1, LastIndex: 12_000, Applied: 12_000, AppendRate: 50}
	young := &policy.SnapshotFacts{LastIndex: &at, AgeMs: 5_000, EntriesSince: 2_000, BytesSince: 1_000}
	d := p.Decide(log, young)
	if d.Snapshot != nil {
		t.Fatalf("young and small: %+v", d)
	}
	// 50 entries/s for 10 s: a tail of 500 (above min_keep).
	if d.PurgeUpTo == nil || *d.PurgeUpTo != 9_500 {
		t.Fatalf("the tail: %+v", d)
	}
	old := *young
	old.AgeMs = 61_000
	if d = p.Decide(log, &old); d.Snapshot == nil || *d.Snapshot != policy.Incremental {
		t.Fatalf("old: %+v", d)
	}
	idle := old
	idle.EntriesSince = 0
	if d = p.Decide(log, &idle); d.Snapshot != nil {
		t.Fatalf("old but unchanged: %+v", d)
	}
	big := *young
	big.BytesSince = 2 << 20
	if d = p.Decide(log, &big); d.Snapshot == nil || !strings.Contains(d.Reason, "2.0MiB") {
		t.Fatalf("big: %+v", d)
	}
	first := policy.SnapshotFacts{EntriesSince: 1}
	if d = p.Decide(log, &first); d.Snapshot == nil || *d.Snapshot != policy.Full {
		t.Fatalf("first: %+v", d)
	}
}
