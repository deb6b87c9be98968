package policy

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("# a policy\na = 1_000 # inline\nb = \"x # not a comment\"\n\nc = \"64MiB\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Uint("a", 0) != 1000 || c.String("b", "") != "x # not a comment" || c.Bytes("c", 0) != 64<<20 {
		t.Fatal("values")
	}
	if c.Uint("missing", 7) != 7 || c.Unused() != nil {
		t.Fatal("defaults")
	}
	for text, want := range map[string]string{
		"[table]":        "tables",
		"a 1":            "key = value",
		"a = \"open":     "unterminated",
		"a = 1\na = 2":   "twice",
		"s = \"x\" junk": "unexpected",
	} {
		if _, err := ParseConfig(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", text, err)
		}
	}
	c, _ = ParseConfig("n = -1\nt = 1")
	c.Uint("n", 0)
	if err := c.Unused(); err == nil || !strings.Contains(err.Error(), "line 1 (`n`)") {
		t.Errorf("a negative integer: %v", err)
	}
	c, _ = ParseConfig("t = 1")
	if err := c.Unused(); err == nil || !strings.Contains(err.Error(), "unknown key `t`") {
		t.Errorf("an unknown key: %v", err)
	}
}
