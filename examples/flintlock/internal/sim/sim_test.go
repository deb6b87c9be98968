package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"ramrod.dev/flintlock/internal/sim"
	"ramrod.dev/flintlock/internal/testcluster"
	"ramrod.dev/flintlock/microvmstore"
)

// The simulator reconciles what its API creates and deletes, and what
// changed while the node it talks to was restarting.
func TestTheSimulatorReconcilesAcrossANodeRestart(t *testing.T) {
	c := testcluster.Start(t, 3, "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// The simulator talks to node 2's socket only, as Flintlock talks to
	// the node beside it.
	simClient := c.Client(t, 2)
	repo, err := microvmstore.New(simClient, microvmstore.Options{HostID: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := &sim.Host{Client: simClient, Repo: repo, Resync: 500 * time.Millisecond, Log: quiet}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	api := httptest.NewServer(h.Handler())
	defer api.Close()

	create := func(name string) {
		body, _ := json.Marshal(sim.CreateRequest{Namespace: "ns", Name: name, VCPU: 2, MemoryMb: 512})
		resp, err := http.Post(api.URL+"/v1/microvms", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d", name, resp.StatusCode)
		}
	}
	// Another host's API writes this host's records too (placement above
	// Flintlock), through another node.
	other, err := microvmstore.New(c.Client(t, 1, 3), microvmstore.Options{HostID: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	states := func() map[string]microvmstore.MicroVMState {
		all, err := other.GetAll(ctx, nil)
		if err != nil {
			return nil
		}
		out := map[string]microvmstore.MicroVMState{}
		for _, vm := range all {
			out[vm.ID.Name] = vm.Status.State
		}
		return out
	}
	eventually := func(what string, cond func(map[string]microvmstore.MicroVMState) bool) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if cond(states()) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s: %v", what, states())
	}
	allCreated := func(n int) func(map[string]microvmstore.MicroVMState) bool {
		return func(s map[string]microvmstore.MicroVMState) bool {
			if len(s) != n {
				return false
			}
			for _, st := range s {
				if st != microvmstore.CreatedState {
					return false
				}
			}
			return true
		}
	}
	for i := 0; i < 3; i++ {
		create(fmt.Sprintf("api-%d", i))
	}
	eventually("the API's microvms created", allCreated(3))

	// Node 2 restarts; meanwhile microvms arrive through the others.
	c.Stop(2)
	for i := 0; i < 3; i++ {
		vm := &microvmstore.MicroVM{
			ID:     microvmstore.VMID{Namespace: "ns", Name: fmt.Sprintf("while-down-%d", i)},
			Spec:   microvmstore.MicroVMSpec{VCPU: 1, MemoryInMb: 256},
			Status: microvmstore.MicroVMStatus{State: microvmstore.PendingState},
		}
		if _, err := other.Save(ctx, vm); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart(2)
	eventually("what changed while the node was down reconciled", allCreated(6))

	// A delete through the API: marked, then removed by the loop.
	vm, err := other.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: "ns", Name: "api-0"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, api.URL+"/v1/microvms/ns/api-0/"+vm.ID.UID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %v %v", resp, err)
	}
	resp.Body.Close()
	eventually("the deleted microvm removed", allCreated(5))
	// Bad input: 400 naming it.
	resp, err = http.Post(api.URL+"/v1/microvms", "application/json", bytes.NewReader([]byte(`{"namespace":"ns","name":"x","vcpu":1,"memory_mb":1,"colour":"blue"}`)))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown field: %v %v", resp, err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(msg, []byte("colour")) {
		t.Fatalf("the answer does not name the field: %s", msg)
	}
	cancel()
	<-done
}
