package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is a policy's flat TOML configuration: `key = value` lines with
// integers, "strings" and booleans (no module proxy is reachable here, so
// no TOML library: this reads what a policy config needs). A policy takes
// its keys with the typed getters; Load refuses keys no getter asked for.
type Config struct {
	values map[string]value
	used   map[string]bool
	err    error
}

type value struct {
	line int
	text string // the raw value
	str  *string
}

// ParseConfig reads TOML text.
func ParseConfig(text string) (*Config, error) {
	c := &Config{values: map[string]value{}, used: map[string]bool{}}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			return nil, fmt.Errorf("line %d: tables are not part of a policy config", i+1)
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected `key = value`", i+1)
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, "\"") {
			end := strings.IndexByte(val[1:], '"')
			if end < 0 || strings.ContainsRune(val[1:end+1], '\\') {
				return nil, fmt.Errorf("line %d (`%s`): an unterminated (or escaped) string", i+1, key)
			}
			s := val[1 : end+1]
			rest := strings.TrimSpace(val[end+2:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				return nil, fmt.Errorf("line %d (`%s`): unexpected text after the value", i+1, key)
			}
			c.values[key] = value{line: i + 1, text: val[:end+2], str: &s}
			continue
		}
		if j := strings.IndexByte(val, '#'); j >= 0 {
			val = strings.TrimSpace(val[:j])
		}
		if _, dup := c.values[key]; dup {
			return nil, fmt.Errorf("line %d: `%s` is set twice", i+1, key)
		}
		c.values[key] = value{line: i + 1, text: val}
	}
	return c, nil
}

func (c *Config) get(key string) (value, bool) {
	c.used[key] = true
	v, ok := c.values[key]
	return v, ok
}

func (c *Config) fail(v value, key, want string) {
	if c.err == nil {
		c.err = fmt.Errorf("line %d (`%s`): expected %s, not %s", v.line, key, want, v.text)
	}
}

// Uint is the non-negative integer key (with `_` separators), or def.
func (c *Config) Uint(key string, def uint64) uint64 {
	v, ok := c.get(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(strings.ReplaceAll(v.text, "_", ""), 10, 64)
	if err != nil || v.str != nil {
		c.fail(v, key, "a non-negative integer")
		return def
	}
	return n
}

// Uint32 is Uint within 32 bits.
func (c *Config) Uint32(key string, def uint32) uint32 {
	n := c.Uint(key, uint64(def))
	if n > 1<<32-1 {
		c.fail(c.values[key], key, "an integer below 2^32")
		return def
	}
	return uint32(n)
}

// String is the string key, or def.
func (c *Config) String(key, def string) string {
	v, ok := c.get(key)
	if !ok {
		return def
	}
	if v.str == nil {
		c.fail(v, key, "a \"string\"")
		return def
	}
	return *v.str
}

// Kind is a snapshot kind key ("full" or "incremental"), or def.
func (c *Config) Kind(key string, def Kind) Kind {
	v, ok := c.get(key)
	switch {
	case !ok:
		return def
	case v.str != nil && *v.str == "full":
		return Full
	case v.str != nil && *v.str == "incremental":
		return Incremental
	}
	c.fail(v, key, "\"full\" or \"incremental\"")
	return def
}

// Duration is a string key in Go's duration syntax ("90s", "5m"), or def.
func (c *Config) Duration(key string, def time.Duration) time.Duration {
	s := c.String(key, "")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		c.fail(c.values[key], key, "a duration such as \"90s\" or \"5m\"")
		return def
	}
	return d
}

// Bytes is a string key with a size ("64MiB", "1GB", "512KiB", "1000"),
// or def.
func (c *Config) Bytes(key string, def uint64) uint64 {
	v, ok := c.get(key)
	if !ok {
		return def
	}
	s := v.text
	if v.str != nil {
		s = *v.str
	}
	n, err := parseSize(s)
	if err != nil {
		c.fail(v, key, "a size such as \"64MiB\" or \"1GB\"")
		return def
	}
	return n
}

var units = []struct {
	suffix string
	scale  uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	scale := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, scale = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 10, 64)
	if err != nil {
		return 0, err
	}
	if n > ^uint64(0)/scale {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return n * scale, nil
}

// Err is the first error a getter met.
func (c *Config) Err() error { return c.err }

// Unused names a key no getter asked for (a typo), with the line.
func (c *Config) Unused() error {
	if c.err != nil {
		return c.err
	}
	var known []string
	for k := range c.used {
		known = append(known, k)
	}
	for k, v := range c.values {
		if !c.used[k] {
			slices.Sort(known)
			return fmt.Errorf("line %d: unknown key `%s` (known: %s)", v.line, k, strings.Join(known, ", "))
		}
	}
	return nil
}
