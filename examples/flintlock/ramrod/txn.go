package ramrod

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Compare is one condition of a transaction (build it with the Compare*
// functions).
type Compare struct {
	target string
	key    string
	cmp    string
	value  any
}

// Comparisons.
const (
	Equal    = "="
	NotEqual = "!="
	Less     = "<"
	Greater  = ">"
)

// CompareModRevision: key's mod revision cmp rev (0 when absent).
func CompareModRevision(key, cmp string, rev uint64) Compare {
	return Compare{"mod_revision", key, cmp, rev}
}

// CompareCreateRevision: key's create revision cmp rev (0 when absent).
func CompareCreateRevision(key, cmp string, rev uint64) Compare {
	return Compare{"create_revision", key, cmp, rev}
}

// CompareVersion: key's version cmp v (0 when absent).
func CompareVersion(key, cmp string, v uint64) Compare {
	return Compare{"version", key, cmp, v}
}

// CompareValue: key's value cmp value (fails on an absent key).
func CompareValue(key, cmp string, value []byte) Compare {
	return Compare{"value", key, cmp, value}
}

// CompareAbsent holds when key does not exist.
func CompareAbsent(key string) Compare { return Compare{target: "absent", key: key} }

// CompareExists holds when key exists.
func CompareExists(key string) Compare { return Compare{target: "exists", key: key} }

func (c Compare) json(i int) (map[string]any, error) {
	m := map[string]any{"target": c.target, "key": c.key}
	if c.cmp != "" {
		m["cmp"] = c.cmp
	}
	switch v := c.value.(type) {
	case nil:
	case []byte:
		s, err := utf8String(fmt.Sprintf("compare[%d] value", i), v)
		if err != nil {
			return nil, err
		}
		m["value"] = s
	default:
		m["value"] = v
	}
	return m, nil
}

// Op is one operation of a transaction branch (build it with the Op*
// functions).
type Op struct {
	op     string
	key    string
	value  []byte
	prefix string
	limit  int
}

// OpPut sets key to value.
func OpPut(key string, value []byte) Op { return Op{op: "put", key: key, value: value} }

// OpDelete removes key.
func OpDelete(key string) Op { return Op{op: "delete", key: key} }

// OpDeletePrefix removes every key starting with prefix.
func OpDeletePrefix(prefix string) Op { return Op{op: "delete-prefix", prefix: prefix} }

// OpGet reads key as the transaction sees it.
func OpGet(key string) Op { return Op{op: "get", key: key} }

// OpList reads up to limit keys starting with prefix.
func OpList(prefix string, limit int) Op { return Op{op: "list", prefix: prefix, limit: limit} }

func (o Op) json(what string) (map[string]any, error) {
	m := map[string]any{"op": o.op}
	switch o.op {
	case "put":
		s, err := utf8String(what+" value", o.value)
		if err != nil {
			return nil, err
		}
		m["key"], m["value"] = o.key, s
	case "delete", "get":
		m["key"] = o.key
	case "delete-prefix":
		m["prefix"] = o.prefix
	case "list":
		m["prefix"], m["limit"] = o.prefix, o.limit
	}
	return m, nil
}

// Txn is a guarded transaction: if every compare holds, Success runs,
// else Failure; as one atomic, linearizable step.
type Txn struct {
	Compares []Compare
	Success  []Op
	Failure  []Op
}

// OpResult is what one operation of the branch that ran did.
type OpResult struct {
	// Op is "put", "delete", "get" or "list".
	Op string
	// Prev is a put's previous record (nil: created).
	Prev *KeyValue
	// Deleted is how many keys a delete removed.
	Deleted uint64
	// KV is a get's record (nil: absent).
	KV *KeyValue
	// KVs and More are a list's records.
	KVs  []KeyValue
	More bool
}

// TxnResult is what a transaction did.
type TxnResult struct {
	Succeeded bool
	Revision  uint64
	Results   []OpResult
}

type opResultJSON struct {
	Op      string       `json:"op"`
	Prev    *recordJSON  `json:"prev"`
	Deleted uint64       `json:"deleted"`
	KV      *recordJSON  `json:"kv"`
	KVs     []recordJSON `json:"kvs"`
	More    bool         `json:"more"`
}

func (r *recordJSON) ptr() *KeyValue {
	if r == nil {
		return nil
	}
	kv := r.kv()
	return &kv
}

// Txn runs t on the leader. A transaction is not retried once it may have
// reached the leader: on a transport error its fate is unknown (read back
// what it guards to find out).
func (c *Client) Txn(ctx context.Context, t Txn) (*TxnResult, error) {
	body := map[string]any{}
	var compares, success, failure []map[string]any
	for i, cmp := range t.Compares {
		m, err := cmp.json(i)
		if err != nil {
			return nil, err
		}
		compares = append(compares, m)
	}
	for _, branch := range []struct {
		name string
		ops  []Op
		out  *[]map[string]any
	}{{"success", t.Success, &success}, {"failure", t.Failure, &failure}} {
		for i, o := range branch.ops {
			m, err := o.json(fmt.Sprintf("%s[%d]", branch.name, i))
			if err != nil {
				return nil, err
			}
			*branch.out = append(*branch.out, m)
		}
	}
	body["compare"], body["success"], body["failure"] = nonNil(compares), nonNil(success), nonNil(failure)
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	resp, u, err := c.do(ctx, request{method: http.MethodPost, path: "/kv/txn", body: data})
	if err != nil {
		return nil, err
	}
	var reply struct {
		Succeeded bool           `json:"succeeded"`
		Revision  uint64         `json:"revision"`
		Results   []opResultJSON `json:"results"`
	}
	if err := decodeJSON(resp, u, &reply); err != nil {
		return nil, err
	}
	r := &TxnResult{Succeeded: reply.Succeeded, Revision: reply.Revision}
	for _, o := range reply.Results {
		res := OpResult{Op: o.Op, Prev: o.Prev.ptr(), Deleted: o.Deleted, KV: o.KV.ptr(), More: o.More}
		for _, kv := range o.KVs {
			res.KVs = append(res.KVs, kv.kv())
		}
		r.Results = append(r.Results, res)
	}
	return r, nil
}

func nonNil(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}
