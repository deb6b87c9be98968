// Package microvmstore is a Flintlock MicroVM repository backed by a
// ramrod cluster: the method set of Flintlock's `ports.MicroVMRepository`
// (Save, Delete, Get, GetAll, Exists, ReleaseLease) over records shaped
// like Flintlock's `models.MicroVM`.
//
// Keys are scoped by host, so hosts sharing a cluster never see each
// other's records:
//
//	flintlock/v1/hosts/<host>/microvms/latest/<ns>/<name>/<uid>              the newest version
//	flintlock/v1/hosts/<host>/microvms/versions/<ns>/<name>/<uid>/<version>  each kept version
//
// Save is one guarded transaction: it is skipped when nothing changed,
// bumps the version, is refused (ErrConflict) when another save got there
// first, and keeps the newest KeepVersions versions, pruning the older ones
// in the same transaction.
package microvmstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"ramrod.dev/flintlock/ramrod"
)

// ErrNotFound: no such microVM (or version).
var ErrNotFound = errors.New("microvmstore: microvm not found")

// ErrConflict: another save of the same microVM got there first, or the
// record saved was read at an older version than the newest. Read it
// again and retry.
var ErrConflict = errors.New("microvmstore: conflicting save")

// ErrInvalid: a name, namespace, uid, host id, version or query is not
// one the repository can store or look up.
var ErrInvalid = errors.New("microvmstore: invalid")

// DefaultKeepVersions is how many versions of a microVM are kept.
const DefaultKeepVersions = 10

// pruneWindow bounds the old versions one save deletes (a smaller
// KeepVersions than before leaves older versions than this in place).
const pruneWindow = 16

// Options configure a repository.
type Options struct {
	// HostID scopes every key (required; no '/').
	HostID string
	// KeepVersions is how many versions to keep (default 10).
	KeepVersions int
}

// Repository is safe for concurrent use.
type Repository struct {
	c      *ramrod.Client
	prefix string
	keep   int
}

// New returns the repository of host opts.HostID on the cluster c talks to.
func New(c *ramrod.Client, opts Options) (*Repository, error) {
	if err := checkPart("host id", opts.HostID); err != nil {
		return nil, err
	}
	keep := opts.KeepVersions
	if keep <= 0 {
		keep = DefaultKeepVersions
	}
	return &Repository{c: c, prefix: "flintlock/v1/hosts/" + opts.HostID + "/microvms/", keep: keep}, nil
}

func checkPart(what, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("%w: %s %q must be non-empty, without '/'", ErrInvalid, what, s)
	}
	return nil
}

func checkID(id VMID) error {
	for _, p := range []struct{ what, v string }{{"namespace", id.Namespace}, {"name", id.Name}, {"uid", id.UID}} {
		if err := checkPart(p.what, p.v); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repository) latestKey(id VMID) string {
	return r.prefix + "latest/" + id.Namespace + "/" + id.Name + "/" + id.UID
}

func (r *Repository) versionsPrefix(id VMID) string {
	return r.prefix + "versions/" + id.Namespace + "/" + id.Name + "/" + id.UID + "/"
}

func (r *Repository) versionKey(id VMID, v int) string {
	return r.versionsPrefix(id) + fmt.Sprintf("%010d", v)
}

func decode(kv *ramrod.KeyValue) (*MicroVM, error) {
	var vm MicroVM
	if err := json.Unmarshal(kv.Value, &vm); err != nil {
		return nil, fmt.Errorf("microvmstore: record %s does not decode: %w", kv.Key, err)
	}
	return &vm, nil
}

// content is a record without its version, for "did anything change".
func content(vm *MicroVM) []byte {
	c := *vm
	c.Version = 0
	b, _ := json.Marshal(c)
	return b
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Save stores vm as a new version (a uid is made when it has none) and
// returns the record as stored. An unchanged record is not written again:
// the stored one is returned. A vm read at an older version than the
// newest, or a concurrent save, gives ErrConflict.
func (r *Repository) Save(ctx context.Context, vm *MicroVM) (*MicroVM, error) {
	if vm == nil {
		return nil, fmt.Errorf("%w: nil microvm", ErrInvalid)
	}
	rec := *vm
	if rec.ID.UID == "" {
		rec.ID.UID = newUID()
	}
	if err := checkID(rec.ID); err != nil {
		return nil, err
	}
	key := r.latestKey(rec.ID)
	cur, err := r.c.Get(ctx, key)
	var guard ramrod.Compare
	var seen uint64
	switch {
	case err == nil:
		existing, err := decode(cur)
		if err != nil {
			return nil, err
		}
		if rec.Version != 0 && rec.Version < existing.Version {
			return nil, fmt.Errorf("%w: %s was read at version %d, the newest is %d", ErrConflict, rec.ID, rec.Version, existing.Version)
		}
		if bytes.Equal(content(existing), content(&rec)) {
			return existing, nil
		}
		rec.Version = existing.Version + 1
		seen = cur.ModRevision
		guard = ramrod.CompareModRevision(key, ramrod.Equal, seen)
	case errors.Is(err, ramrod.ErrNotFound):
		if rec.Version > 0 {
			// Read at a version, and gone since: saving would bring a
			// deleted microVM back.
			return nil, fmt.Errorf("%w: %s was deleted since it was read (version %d)", ErrConflict, rec.ID, rec.Version)
		}
		rec.Version = 1
		guard = ramrod.CompareAbsent(key)
	default:
		return nil, err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	ops := []ramrod.Op{ramrod.OpPut(key, data), ramrod.OpPut(r.versionKey(rec.ID, rec.Version), data)}
	for v := max(1, rec.Version-r.keep-pruneWindow+1); v <= rec.Version-r.keep; v++ {
		ops = append(ops, ramrod.OpDelete(r.versionKey(rec.ID, v)))
	}
	txn := ramrod.Txn{Compares: []ramrod.Compare{guard}, Success: ops, Failure: []ramrod.Op{ramrod.OpGet(key)}}
	for attempt := 0; ; attempt++ {
		res, err := r.c.Txn(ctx, txn)
		if err == nil {
			if res.Succeeded {
				return &rec, nil
			}
			// After a lost answer, the first attempt may be what changed it.
			if attempt > 0 && len(res.Results) == 1 && res.Results[0].KV != nil && bytes.Equal(res.Results[0].KV.Value, data) {
				return &rec, nil
			}
			return nil, fmt.Errorf("%w: %s changed since it was read", ErrConflict, rec.ID)
		}
		if ctx.Err() != nil || attempt == 3 || !unknownOutcome(err) {
			return nil, err
		}
		// The answer was lost: read back. Applied, it is there; not
		// applied, the guard still holds and the save may go again (the
		// guard keeps a second application out).
		now, gerr := r.c.Get(ctx, key)
		switch {
		case gerr == nil && bytes.Equal(now.Value, data):
			return &rec, nil
		case gerr == nil && now.ModRevision == seen && seen != 0:
		case errors.Is(gerr, ramrod.ErrNotFound) && seen == 0:
		case gerr == nil || errors.Is(gerr, ramrod.ErrNotFound):
			return nil, fmt.Errorf("%w: %s changed while the save's answer was lost", ErrConflict, rec.ID)
		default:
			return nil, fmt.Errorf("microvmstore: the save of %s may or may not have applied (%v), and reading it back failed: %w", rec.ID, err, gerr)
		}
	}
}

// unknownOutcome: the request may have reached the leader, and no answer
// came back.
func unknownOutcome(err error) bool {
	var se *ramrod.StatusError
	var ce *ramrod.ConflictError
	switch {
	case errors.As(err, &ce), errors.Is(err, ramrod.ErrBadRequest), errors.Is(err, ramrod.ErrUnauthorized):
		return false
	case errors.As(err, &se):
		// A node that could not serve (503) may have proposed the entry.
		return se.Status == 503
	}
	return true
}

// Delete removes vm's record and every kept version, in one step. A
// microVM that does not exist is not an error.
func (r *Repository) Delete(ctx context.Context, vm *MicroVM) error {
	if vm == nil {
		return fmt.Errorf("%w: nil microvm", ErrInvalid)
	}
	if err := checkID(vm.ID); err != nil {
		return err
	}
	key := r.latestKey(vm.ID)
	_, err := r.c.Txn(ctx, ramrod.Txn{
		Compares: []ramrod.Compare{ramrod.CompareExists(key)},
		Success:  []ramrod.Op{ramrod.OpDelete(key), ramrod.OpDeletePrefix(r.versionsPrefix(vm.ID))},
	})
	return err
}

// Get returns one record: the latest, or opts.Version. Without a uid, the
// newest microVM (by creation) under the namespace and name.
func (r *Repository) Get(ctx context.Context, opts RepositoryGetOptions) (*MicroVM, error) {
	if err := checkPart("namespace", opts.Namespace); err != nil {
		return nil, err
	}
	if err := checkPart("name", opts.Name); err != nil {
		return nil, err
	}
	id := VMID{Namespace: opts.Namespace, Name: opts.Name, UID: opts.UID}
	if id.UID == "" {
		kvs, _, err := r.c.ListAll(ctx, r.prefix+"latest/"+id.Namespace+"/"+id.Name+"/")
		if err != nil {
			return nil, err
		}
		if len(kvs) == 0 {
			return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, id.Namespace, id.Name)
		}
		newest := kvs[0]
		for _, kv := range kvs[1:] {
			if kv.CreateRevision > newest.CreateRevision {
				newest = kv
			}
		}
		id.UID = newest.Key[strings.LastIndexByte(newest.Key, '/')+1:]
		if opts.Version == "" || opts.Version == "0" {
			return decode(&newest)
		}
	}
	if err := checkPart("uid", id.UID); err != nil {
		return nil, err
	}
	key := r.latestKey(id)
	if opts.Version != "" && opts.Version != "0" {
		v, err := strconv.Atoi(opts.Version)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w: version %q is not a positive number", ErrInvalid, opts.Version)
		}
		key = r.versionKey(id, v)
	}
	kv, err := r.c.Get(ctx, key)
	if errors.Is(err, ramrod.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s (version %q)", ErrNotFound, id, opts.Version)
	}
	if err != nil {
		return nil, err
	}
	return decode(kv)
}

// GetAll returns the latest record of every microVM of this host that
// matches query ("namespace", "name"; both optional), in key order.
func (r *Repository) GetAll(ctx context.Context, query ListMicroVMQuery) ([]*MicroVM, error) {
	ns, name := query["namespace"], query["name"]
	for k, v := range query {
		if err := checkPart(k, v); err != nil && v != "" {
			return nil, err
		}
		if k != "namespace" && k != "name" {
			return nil, fmt.Errorf("%w: unknown query key %q (namespace, name)", ErrInvalid, k)
		}
	}
	prefix := r.prefix + "latest/"
	if ns != "" {
		prefix += ns + "/"
		if name != "" {
			prefix += name + "/"
		}
	}
	kvs, _, err := r.c.ListAll(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]*MicroVM, 0, len(kvs))
	for i := range kvs {
		vm, err := decode(&kvs[i])
		if err != nil {
			return nil, err
		}
		if name != "" && vm.ID.Name != name {
			continue
		}
		out = append(out, vm)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

// Exists says whether the microVM has a record.
func (r *Repository) Exists(ctx context.Context, id VMID) (bool, error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	_, err := r.c.Get(ctx, r.latestKey(id))
	if errors.Is(err, ramrod.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReleaseLease is part of Flintlock's interface, where records live in
// containerd's content store under a lease. Records in ramrod are keys
// with no lease: there is nothing to release, and it returns nil.
func (r *Repository) ReleaseLease(_ context.Context, _ *MicroVM) error { return nil }

// Prefix is the key prefix of this host's latest records (what a watcher
// of this host's microVMs follows).
func (r *Repository) Prefix() string { return r.prefix + "latest/" }

// Decode reads a record from a watch event or a listing.
func Decode(kv *ramrod.KeyValue) (*MicroVM, error) { return decode(kv) }
