package ramrod_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"ramrod.dev/flintlock/internal/testcluster"
	"ramrod.dev/flintlock/ramrod"
)

func TestClientAgainstACluster(t *testing.T) {
	c := testcluster.Start(t, 3, "[watch]\nhistory-events = 50\n")
	ctx := t.Context()
	leader := c.Leader(t)
	follower := 1 + leader%3

	// Over TCP to a follower: writes and linearizable reads follow 421 to
	// the leader.
	tcp, err := ramrod.New(ramrod.Config{Endpoints: []string{c.Node(follower).Addr}, Token: testcluster.Token})
	if err != nil {
		t.Fatal(err)
	}
	w, err := tcp.Put(ctx, "vm/a", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := tcp.Get(ctx, "vm/a")
	if err != nil || string(kv.Value) != "one" || kv.ModRevision != w.Revision || kv.Version != 1 {
		t.Fatalf("get: %+v %v", kv, err)
	}
	if _, err := tcp.Get(ctx, "vm/none"); !errors.Is(err, ramrod.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}

	// Typed errors: a failed guard carries the current revisions.
	_, err = tcp.PutIf(ctx, "vm/a", []byte("two"), ramrod.IfModRevision(w.Revision-1))
	var ce *ramrod.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ramrod.ErrConflict) || ce.ModRevision != w.Revision {
		t.Fatalf("stale guard: %v", err)
	}
	if _, err := tcp.PutIf(ctx, "vm/a", []byte("two"), ramrod.IfModRevision(w.Revision)); err != nil {
		t.Fatal(err)
	}
	if _, err := tcp.PutIf(ctx, "vm/a", []byte("x"), ramrod.IfAbsent()); !errors.Is(err, ramrod.ErrConflict) {
		t.Fatalf("if absent on an existing key: %v", err)
	}
	if _, err := tcp.Get(ctx, "vm/../etc"); !errors.Is(err, ramrod.ErrBadRequest) {
		t.Fatalf("a key with '..': %v", err)
	}
	bad, _ := ramrod.New(ramrod.Config{Endpoints: []string{c.Node(leader).Addr}, Token: "wrong-token-123"})
	if _, err := bad.Status(ctx); !errors.Is(err, ramrod.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}

	// A transaction, both branches.
	cl := c.Client(t)
	cur, _ := cl.Get(ctx, "vm/a")
	r, err := cl.Txn(ctx, ramrod.Txn{
		Compares: []ramrod.Compare{
			ramrod.CompareModRevision("vm/a", ramrod.Equal, cur.ModRevision),
			ramrod.CompareAbsent("vm/b"),
			ramrod.CompareValue("vm/a", ramrod.Equal, []byte("two")),
			ramrod.CompareVersion("vm/a", ramrod.Greater, 1),
		},
		Success: []ramrod.Op{ramrod.OpPut("vm/b", []byte("b")), ramrod.OpGet("vm/a"), ramrod.OpList("vm/", 10)},
		Failure: []ramrod.Op{ramrod.OpGet("vm/a")},
	})
	if err != nil || !r.Succeeded || len(r.Results) != 3 || len(r.Results[2].KVs) != 2 {
		t.Fatalf("txn: %+v %v", r, err)
	}
	r, err = cl.Txn(ctx, ramrod.Txn{
		Compares: []ramrod.Compare{ramrod.CompareAbsent("vm/b")},
		Success:  []ramrod.Op{ramrod.OpDelete("vm/a")},
		Failure:  []ramrod.Op{ramrod.OpGet("vm/b")},
	})
	if err != nil || r.Succeeded || r.Results[0].KV == nil || string(r.Results[0].KV.Value) != "b" {
		t.Fatalf("failure branch: %+v %v", r, err)
	}
	if _, err := cl.Txn(ctx, ramrod.Txn{Success: []ramrod.Op{ramrod.OpPut("k", []byte{0xff})}}); !errors.Is(err, ramrod.ErrBadRequest) {
		t.Fatalf("a value that is not UTF-8: %v", err)
	}

	// Paged listing of more than a page.
	for i := 0; i < 1200; i += 100 {
		ops := make([]ramrod.Op, 0, 100)
		for j := i; j < i+100; j++ {
			ops = append(ops, ramrod.OpPut(fmt.Sprintf("page/%05d", j), []byte("v")))
		}
		if _, err := cl.Txn(ctx, ramrod.Txn{Success: ops}); err != nil {
			t.Fatal(err)
		}
	}
	all, rev, err := cl.ListAll(ctx, "page/")
	if err != nil || len(all) != 1200 || rev == 0 {
		t.Fatalf("ListAll: %d, %v", len(all), err)
	}

	// A watch from a compacted revision says so; one from now resumes
	// across a restart of the node it is on, missing nothing.
	if _, err := cl.Watch(ctx, ramrod.WatchOptions{Key: "page/", IsPrefix: true, FromRevision: 1}); !errors.Is(err, ramrod.ErrCompacted) {
		t.Fatalf("a watch from revision 1 after 1200 changes with a history of 50: %v", err)
	}
	on := c.Client(t, follower, leader)
	events, err := on.Watch(ctx, ramrod.WatchOptions{Key: "w/", IsPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	// Each step writes two keys in one transaction: one revision, two
	// changes, both delivered.
	writes := map[string]uint64{}
	for i := 0; i < 30; i++ {
		if i == 10 {
			c.Stop(follower)
		}
		if i == 20 {
			c.Restart(follower)
		}
		a, b := fmt.Sprintf("w/%02d/a", i), fmt.Sprintf("w/%02d/b", i)
		r, err := cl.Txn(ctx, ramrod.Txn{Success: []ramrod.Op{ramrod.OpPut(a, []byte("v")), ramrod.OpPut(b, []byte("v"))}})
		if err != nil {
			t.Fatal(err)
		}
		writes[a], writes[b] = r.Revision, r.Revision
	}
	var last uint64
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(writes) > 0 {
		select {
		case m := <-events:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			if m.Event == nil {
				continue
			}
			k, rev := m.Event.KV.Key, m.Event.Revision()
			if rev < last || seen[k] {
				t.Fatalf("%s at revision %d after %d (seen before: %v)", k, rev, last, seen[k])
			}
			if writes[k] != rev {
				t.Fatalf("event %s at %d, not a write of the test", k, rev)
			}
			last, seen[k] = rev, true
			delete(writes, k)
		case <-deadline:
			t.Fatalf("%d writes never seen", len(writes))
		}
	}
	ctx2, cancel := context.WithCancel(ctx)
	ch, err := cl.Watch(ctx2, ramrod.WatchOptions{Key: "x"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	closed := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-closed:
			t.Fatal("a cancelled watch's channel stayed open")
		}
	}

	// Members and status.
	m, err := cl.Members(ctx)
	if err != nil || len(m.Voters) != 3 {
		t.Fatalf("members: %+v %v", m, err)
	}
	if _, err := cl.RemoveMember(ctx, 9); !errors.Is(err, ramrod.ErrBadRequest) {
		t.Fatalf("removing a node that is not a member: %v", err)
	}
}

func TestRetriesGoToTheNextEndpointButNotBlindWrites(t *testing.T) {
	c := testcluster.Start(t, 3, "")
	ctx := t.Context()
	down := c.Leader(t)
	c.Stop(down)
	c.Leader(t)
	// The first endpoint is down (its socket is gone): every call goes on
	// to the next (a refused connection never reached a node).
	cl := c.Client(t, down, 1+down%3, 1+(down+1)%3)
	if _, err := cl.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if kv, err := cl.Get(ctx, "k"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("%+v %v", kv, err)
	}
	// Nothing reachable: a clear error after the retries.
	none, _ := ramrod.New(ramrod.Config{Endpoints: []string{"unix://" + t.TempDir() + "/none.sock"}, Attempts: 2})
	if _, err := none.Put(ctx, "k", []byte("v")); !errors.Is(err, ramrod.ErrUnavailable) {
		t.Fatalf("no endpoint: %v", err)
	}
	if _, err := ramrod.New(ramrod.Config{Endpoints: []string{"ftp://x"}}); err == nil {
		t.Fatal("a bad endpoint was accepted")
	}

	// A server that takes the request and hangs up: a read is retried, a
	// write (whose fate is unknown) is not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			buf := make([]byte, 4096)
			_, _ = conn.Read(buf)
			conn.Close()
		}
	}()
	hangs, _ := ramrod.New(ramrod.Config{Endpoints: []string{ln.Addr().String()}, Attempts: 3, Backoff: time.Millisecond})
	if _, err := hangs.Put(ctx, "k", []byte("v")); err == nil || errors.Is(err, ramrod.ErrUnavailable) {
		t.Fatalf("a write with no answer: %v", err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("a write with no answer was sent %d times", n)
	}
	if _, err := hangs.Get(ctx, "k"); err == nil {
		t.Fatal("a read with no answer succeeded")
	}
	if n := conns.Load(); n != 4 {
		t.Fatalf("a read with no answer was sent %d times, not 3", n-1)
	}
}

// A cluster with [tls]: the client reaches a follower over HTTPS with the
// cluster CA and follows 421 to the leader over HTTPS; without the CA, or
// over plain HTTP, it gets nowhere; a unix-socket client's writes are
// sent on to the leader over HTTPS.
func TestTLSCluster(t *testing.T) {
	c := testcluster.StartTLS(t, 3, "")
	ctx := t.Context()
	leader := c.Leader(t)
	follower := 1 + leader%3
	tlsCfg, err := ramrod.CAConfig(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := ramrod.New(ramrod.Config{Endpoints: []string{c.Node(follower).Addr}, TLS: tlsCfg, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	w, err := tcp.Put(ctx, "vm/tls", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := tcp.Get(ctx, "vm/tls"); err != nil || string(kv.Value) != "one" || kv.ModRevision != w.Revision {
		t.Fatalf("get over HTTPS: %+v %v", kv, err)
	}
	sock := c.Client(t, follower)
	if _, err := sock.Put(ctx, "vm/tls-sock", []byte("two")); err != nil {
		t.Fatalf("a write from a follower's socket, sent on over HTTPS: %v", err)
	}
	for name, cfg := range map[string]ramrod.Config{
		"no CA":      {Endpoints: []string{"https://" + c.Node(follower).Addr}, Attempts: 1},
		"plain HTTP": {Endpoints: []string{"http://" + c.Node(follower).Addr}, Attempts: 1},
	} {
		cl, err := ramrod.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Get(ctx, "vm/tls"); err == nil {
			t.Fatalf("%s: a read succeeded", name)
		}
	}
	if _, err := ramrod.CAConfig(filepath.Join(t.TempDir(), "none.pem")); err == nil {
		t.Fatal("a missing CA file loaded")
	}
}
