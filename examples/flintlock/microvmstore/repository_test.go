package microvmstore_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"ramrod.dev/flintlock/internal/testcluster"
	"ramrod.dev/flintlock/microvmstore"
	"ramrod.dev/flintlock/ramrod"
)

func repo(t *testing.T, c *ramrod.Client, host string) *microvmstore.Repository {
	t.Helper()
	r, err := microvmstore.New(c, microvmstore.Options{HostID: host})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func spec(ns, name string, vcpu int64) *microvmstore.MicroVM {
	return &microvmstore.MicroVM{
		ID: microvmstore.VMID{Namespace: ns, Name: name},
		Spec: microvmstore.MicroVMSpec{
			VCPU:       vcpu,
			MemoryInMb: 512,
			Kernel:     microvmstore.Kernel{Image: "ghcr.io/example/kernel:6.1", Filename: "vmlinux"},
			RootVolume: microvmstore.Volume{ID: "root", Source: "ghcr.io/example/ubuntu:22.04"},
			Metadata: map[string]string{
				"user-data": base64.StdEncoding.EncodeToString([]byte("#cloud-config\npassword: secret\n")),
			},
		},
		Status: microvmstore.MicroVMStatus{State: microvmstore.PendingState},
	}
}

func TestRepositoryContract(t *testing.T) {
	c := testcluster.Start(t, 3, "")
	ctx := t.Context()
	cl := c.Client(t)
	r := repo(t, cl, "host-a")

	// Create: version 1, a uid made.
	saved, err := r.Save(ctx, spec("ns1", "vm1", 2))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Version != 1 || saved.ID.UID == "" {
		t.Fatalf("created %+v", saved.ID)
	}
	id := saved.ID
	got, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns1", Name: "vm1"})
	if err != nil || got.ID != id || got.Spec.VCPU != 2 {
		t.Fatalf("get by name: %+v, %v", got, err)
	}
	got, err = r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns1", Name: "vm1", UID: id.UID})
	if err != nil || got.Version != 1 {
		t.Fatalf("get by uid: %+v, %v", got, err)
	}

	// An unchanged save writes nothing.
	key := "flintlock/v1/hosts/host-a/microvms/latest/" + id.String()
	before, err := cl.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	same, err := r.Save(ctx, got)
	if err != nil || same.Version != 1 {
		t.Fatalf("unchanged save: %+v, %v", same, err)
	}
	after, _ := cl.Get(ctx, key)
	if after.ModRevision != before.ModRevision {
		t.Fatal("an unchanged save was written")
	}

	// Changes bump the version; the newest 10 are kept.
	cur := got
	for i := 0; i < 11; i++ {
		cur.Spec.VCPU = int64(3 + i)
		if cur, err = r.Save(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	if cur.Version != 12 {
		t.Fatalf("version %d after 11 changes", cur.Version)
	}
	for v, want := range map[string]error{"1": microvmstore.ErrNotFound, "2": microvmstore.ErrNotFound, "3": nil, "12": nil} {
		old, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns1", Name: "vm1", UID: id.UID, Version: v})
		if !errors.Is(err, want) {
			t.Fatalf("version %s: %v, want %v", v, err, want)
		}
		if err == nil && fmt.Sprint(old.Version) != v {
			t.Fatalf("version %s read as %d", v, old.Version)
		}
	}
	versions, _, err := cl.ListAll(ctx, "flintlock/v1/hosts/host-a/microvms/versions/"+id.String()+"/")
	if err != nil || len(versions) != 10 {
		t.Fatalf("%d versions kept, %v", len(versions), err)
	}

	// A save of a record read at an older version is a conflict.
	stale := *cur
	stale.Version = 5
	stale.Spec.VCPU = 99
	if _, err := r.Save(ctx, &stale); !errors.Is(err, microvmstore.ErrConflict) {
		t.Fatalf("stale save: %v", err)
	}

	// Listing by namespace and name; Exists; not found.
	if _, err := r.Save(ctx, spec("ns1", "vm2", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Save(ctx, spec("ns2", "vm1", 1)); err != nil {
		t.Fatal(err)
	}
	for q, n := range map[string]int{"": 3, "ns1": 2, "ns2": 1, "ns3": 0} {
		all, err := r.GetAll(ctx, microvmstore.ListMicroVMQuery{"namespace": q})
		if err != nil || len(all) != n {
			t.Fatalf("GetAll(namespace=%q): %d, %v", q, len(all), err)
		}
	}
	all, err := r.GetAll(ctx, microvmstore.ListMicroVMQuery{"name": "vm1"})
	if err != nil || len(all) != 2 {
		t.Fatalf("GetAll(name=vm1): %d, %v", len(all), err)
	}
	if _, err := r.GetAll(ctx, microvmstore.ListMicroVMQuery{"colour": "blue"}); err == nil {
		t.Fatal("an unknown query key was accepted")
	}
	if ok, err := r.Exists(ctx, id); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}
	if _, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns1", Name: "nope"}); !errors.Is(err, microvmstore.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}

	// Host isolation: another host on the same cluster sees none of it.
	b := repo(t, cl, "host-b")
	if all, err := b.GetAll(ctx, nil); err != nil || len(all) != 0 {
		t.Fatalf("host-b sees %d records, %v", len(all), err)
	}
	if ok, _ := b.Exists(ctx, id); ok {
		t.Fatal("host-b sees host-a's microvm")
	}
	theirs := spec("ns1", "vm1", 8)
	theirs.ID.UID = id.UID
	if s, err := b.Save(ctx, theirs); err != nil || s.Version != 1 {
		t.Fatalf("host-b's own record: %+v %v", s, err)
	}
	if mine, _ := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns1", Name: "vm1", UID: id.UID}); mine.Version != 12 {
		t.Fatalf("host-b's save changed host-a's record: %d", mine.Version)
	}

	// Delete removes the record and its versions; again is no error.
	if err := r.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Exists(ctx, id); ok {
		t.Fatal("deleted, still exists")
	}
	if versions, _, _ := cl.ListAll(ctx, "flintlock/v1/hosts/host-a/microvms/versions/"+id.String()+"/"); len(versions) != 0 {
		t.Fatalf("%d versions left after delete", len(versions))
	}
	if err := r.Delete(ctx, cur); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := r.ReleaseLease(ctx, cur); err != nil {
		t.Fatal(err)
	}

	// Bad input is refused with what is wrong.
	if _, err := r.Save(ctx, spec("a/b", "vm", 1)); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a namespace with '/': %v", err)
	}
	if _, err := microvmstore.New(cl, microvmstore.Options{HostID: ""}); err == nil {
		t.Fatal("an empty host id was accepted")
	}
}

func TestConcurrentSavesLoseNoUpdate(t *testing.T) {
	const writers, saves = 16, 4
	c := testcluster.Start(t, 3, "")
	ctx := t.Context()
	r := repo(t, c.Client(t), "host-a")
	first, err := r.Save(ctx, spec("ns", "shared", 1))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ok, conflicts int
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := repo(t, c.Client(t, 1+w%3), "host-a")
			for done := 0; done < saves; {
				vm, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns", Name: "shared", UID: first.ID.UID})
				if err != nil {
					t.Error(err)
					return
				}
				vm.Spec.Labels = map[string]string{"writer": fmt.Sprint(w), "n": fmt.Sprint(done)}
				_, err = r.Save(ctx, vm)
				mu.Lock()
				switch {
				case err == nil:
					ok++
					done++
				case errors.Is(err, microvmstore.ErrConflict):
					conflicts++
				default:
					t.Error(err)
					mu.Unlock()
					return
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	last, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns", Name: "shared", UID: first.ID.UID})
	if err != nil {
		t.Fatal(err)
	}
	if ok != writers*saves || last.Version != 1+ok {
		t.Fatalf("%d saves succeeded, final version %d: an update was lost", ok, last.Version)
	}
	if conflicts == 0 {
		t.Fatal("16 concurrent writers and not one conflict reported")
	}
	t.Logf("%d saves, %d conflicts reported", ok, conflicts)
}

func TestSavesSurviveKillingTheLeader(t *testing.T) {
	c := testcluster.Start(t, 3, "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cl := c.Client(t)
	r := repo(t, cl, "host-a")
	// A watcher of every version, on all three sockets (it resumes on
	// another node when its own goes).
	events, err := cl.Watch(ctx, ramrod.WatchOptions{Key: r.Prefix(), IsPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(t)
	saved := map[string]*microvmstore.MicroVM{}
	var order []string
	vms := make([]*microvmstore.MicroVM, 4)
	for i := range vms {
		if vms[i], err = r.Save(ctx, spec("ns", fmt.Sprintf("vm%d", i), 1)); err != nil {
			t.Fatal(err)
		}
		saved[vms[i].ID.String()] = vms[i]
		order = append(order, fmt.Sprintf("%s@%d", vms[i].ID, 1))
	}
	failed := 0
	for n := 0; n < 120; n++ {
		if n == 40 {
			c.Kill(leader)
		}
		if n == 90 {
			c.Restart(leader)
		}
		vm := *vms[n%len(vms)]
		vm.Spec.VCPU = int64(2 + n)
		s, err := r.Save(ctx, &vm)
		if err != nil {
			// Only a save that returned success is owed; a failed one
			// must not have applied half.
			failed++
			if cur, gerr := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns", Name: vm.ID.Name, UID: vm.ID.UID}); gerr == nil {
				vms[n%len(vms)] = cur
				saved[cur.ID.String()] = cur
			}
			continue
		}
		vms[n%len(vms)] = s
		saved[s.ID.String()] = s
		order = append(order, fmt.Sprintf("%s@%d", s.ID, s.Version))
	}
	if failed > 10 {
		t.Fatalf("%d of 120 saves failed around one leader change", failed)
	}
	t.Logf("leader %d killed and restarted; %d of 120 saves failed and were not retried blindly", leader, failed)
	// Every save that returned success is there, with its content, and
	// nothing applied half: each latest record is its version's record.
	for id, want := range saved {
		got, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: want.ID.Namespace, Name: want.ID.Name, UID: want.ID.UID})
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != want.Version || got.Spec.VCPU != want.Spec.VCPU {
			t.Fatalf("%s: stored version %d vcpu %d, saved version %d vcpu %d", id, got.Version, got.Spec.VCPU, want.Version, want.Spec.VCPU)
		}
		v, err := r.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: want.ID.Namespace, Name: want.ID.Name, UID: want.ID.UID, Version: fmt.Sprint(got.Version)})
		if err != nil || v.Spec.VCPU != got.Spec.VCPU {
			t.Fatalf("%s: version %d's record differs from the latest: %+v %v", id, got.Version, v, err)
		}
	}
	// The watcher saw every saved version, each microVM's in order.
	seen := map[string]int{}
	var got []string
	want := map[string]bool{}
	for _, o := range order {
		want[o] = true
	}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case m, ok := <-events:
			if !ok {
				t.Fatal("the watch ended")
			}
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			if m.Event == nil {
				continue
			}
			vm, err := microvmstore.Decode(&m.Event.KV)
			if err != nil {
				t.Fatal(err)
			}
			k := vm.ID.String()
			if vm.Version <= seen[k] {
				t.Fatalf("%s: version %d after %d", k, vm.Version, seen[k])
			}
			seen[k] = vm.Version
			tag := fmt.Sprintf("%s@%d", k, vm.Version)
			got = append(got, tag)
			delete(want, tag)
		case <-deadline:
			t.Fatalf("the watcher never saw %d saved versions (saw %d)", len(want), len(got))
		}
	}
}
