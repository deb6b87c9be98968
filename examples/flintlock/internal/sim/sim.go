// Package sim is a small Flintlock-shaped host: a reconcile loop driven by
// a watch of this host's microVM records, and an HTTP API to create, list
// and delete microVMs. "Creating" a microVM here means recording that it
// was created (its status), as Flintlock does once the VM runs; no VM is
// started.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"ramrod.dev/flintlock/microvmstore"
	"ramrod.dev/flintlock/ramrod"
)

// Host runs one host's reconcile loop and API.
type Host struct {
	Client *ramrod.Client
	Repo   *microvmstore.Repository
	// Resync is how often every record is reconciled again, whatever the
	// watch said (default 30 s).
	Resync time.Duration
	Log    *slog.Logger

	mu         sync.Mutex
	reconciled int
}

// Reconciled is how many reconcile steps changed something.
func (h *Host) Reconciled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconciled
}

func (h *Host) logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// Run reconciles until ctx is done: everything a listing shows, then every
// change the watch reports from the listing's revision; when the watch
// cannot resume (compacted), it lists again.
func (h *Host) Run(ctx context.Context) error {
	resync := h.Resync
	if resync <= 0 {
		resync = 30 * time.Second
	}
	for ctx.Err() == nil {
		kvs, rev, err := h.Client.ListAll(ctx, h.Repo.Prefix())
		if err != nil {
			h.logger().Warn("listing microvms", "error", err)
			if !sleep(ctx, time.Second) {
				break
			}
			continue
		}
		for i := range kvs {
			h.reconcileKV(ctx, &kvs[i])
		}
		wctx, cancel := context.WithCancel(ctx)
		events, err := h.Client.Watch(wctx, ramrod.WatchOptions{Key: h.Repo.Prefix(), IsPrefix: true, FromRevision: rev})
		if err != nil {
			cancel()
			h.logger().Warn("watching microvms", "error", err)
			if !sleep(ctx, time.Second) {
				break
			}
			continue
		}
		tick := time.NewTicker(resync)
	watch:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				cancel()
				return ctx.Err()
			case <-tick.C:
				break watch
			case m, ok := <-events:
				if !ok {
					break watch
				}
				if m.Err != nil {
					h.logger().Info("the watch ended; listing again", "error", m.Err)
					break watch
				}
				if m.Event != nil && m.Event.Type == ramrod.Put {
					h.reconcileKV(ctx, &m.Event.KV)
				}
			}
		}
		tick.Stop()
		// The next round lists and watches anew; this watch ends.
		cancel()
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (h *Host) reconcileKV(ctx context.Context, kv *ramrod.KeyValue) {
	vm, err := microvmstore.Decode(kv)
	if err != nil {
		h.logger().Error("a record does not decode", "key", kv.Key, "error", err)
		return
	}
	id := vm.ID
	for attempt := 0; attempt < 5; attempt++ {
		err = h.reconcile(ctx, vm)
		if !errors.Is(err, microvmstore.ErrConflict) {
			break
		}
		// Someone saved it meanwhile: reconcile the newest.
		if vm, err = h.Repo.Get(ctx, microvmstore.RepositoryGetOptions{Namespace: id.Namespace, Name: id.Name, UID: id.UID}); err != nil {
			break
		}
	}
	if err != nil && !errors.Is(err, microvmstore.ErrNotFound) {
		h.logger().Warn("reconciling", "vm", id.String(), "error", err)
	}
}

// reconcile moves one microVM towards its spec: a pending one is created,
// a deleted one is removed.
func (h *Host) reconcile(ctx context.Context, vm *microvmstore.MicroVM) error {
	switch {
	case vm.Spec.DeletedAt != 0:
		if err := h.Repo.Delete(ctx, vm); err != nil {
			return err
		}
	case vm.Status.State == "" || vm.Status.State == microvmstore.PendingState:
		next := *vm
		next.Status.State = microvmstore.CreatedState
		next.Status.NetworkInterfaces = map[string]microvmstore.NetworkInterfaceStatus{}
		for i, nic := range vm.Spec.NetworkInterfaces {
			next.Status.NetworkInterfaces[nic.GuestDeviceName] = microvmstore.NetworkInterfaceStatus{
				HostDeviceName: fmt.Sprintf("fl%.6s%d", vm.ID.UID, i),
				Index:          i,
			}
		}
		if _, err := h.Repo.Save(ctx, &next); err != nil {
			return err
		}
	default:
		return nil
	}
	h.mu.Lock()
	h.reconciled++
	h.mu.Unlock()
	h.logger().Info("reconciled", "vm", vm.ID.String(), "version", vm.Version)
	return nil
}

// CreateRequest is the body of POST /v1/microvms.
type CreateRequest struct {
	Namespace string                          `json:"namespace"`
	Name      string                          `json:"name"`
	VCPU      int64                           `json:"vcpu"`
	MemoryMb  int64                           `json:"memory_mb"`
	Kernel    string                          `json:"kernel"`
	Root      string                          `json:"root"`
	Metadata  map[string]string               `json:"metadata"`
	Labels    map[string]string               `json:"labels"`
	Networks  []microvmstore.NetworkInterface `json:"networks"`
}

// Handler is the host's HTTP API:
//
//	POST   /v1/microvms                  create (pending; the loop creates it)
//	GET    /v1/microvms?namespace=NS     list
//	GET    /v1/microvms/{ns}/{name}      the newest under a name
//	DELETE /v1/microvms/{ns}/{name}/{uid} mark deleted (the loop removes it)
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/microvms", func(w http.ResponseWriter, r *http.Request) {
		var req CreateRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "malformed microvm: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.VCPU <= 0 || req.MemoryMb <= 0 {
			http.Error(w, "vcpu and memory_mb must be positive", http.StatusBadRequest)
			return
		}
		now := time.Now().Unix()
		vm := &microvmstore.MicroVM{
			ID: microvmstore.VMID{Namespace: req.Namespace, Name: req.Name},
			Spec: microvmstore.MicroVMSpec{
				VCPU: req.VCPU, MemoryInMb: req.MemoryMb, Labels: req.Labels, Metadata: req.Metadata,
				Kernel:            microvmstore.Kernel{Image: req.Kernel},
				RootVolume:        microvmstore.Volume{ID: "root", Source: req.Root},
				NetworkInterfaces: req.Networks,
				CreatedAt:         now, UpdatedAt: now,
			},
			Status: microvmstore.MicroVMStatus{State: microvmstore.PendingState},
		}
		saved, err := h.Repo.Save(r.Context(), vm)
		if err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(saved)
	})
	mux.HandleFunc("GET /v1/microvms", func(w http.ResponseWriter, r *http.Request) {
		q := microvmstore.ListMicroVMQuery{}
		if ns := r.URL.Query().Get("namespace"); ns != "" {
			q["namespace"] = ns
		}
		all, err := h.Repo.GetAll(r.Context(), q)
		if err != nil {
			writeError(w, err)
			return
		}
		_ = json.NewEncoder(w).Encode(all)
	})
	mux.HandleFunc("GET /v1/microvms/{ns}/{name}", func(w http.ResponseWriter, r *http.Request) {
		vm, err := h.Repo.Get(r.Context(), microvmstore.RepositoryGetOptions{Namespace: r.PathValue("ns"), Name: r.PathValue("name")})
		if err != nil {
			writeError(w, err)
			return
		}
		_ = json.NewEncoder(w).Encode(vm)
	})
	mux.HandleFunc("DELETE /v1/microvms/{ns}/{name}/{uid}", func(w http.ResponseWriter, r *http.Request) {
		opts := microvmstore.RepositoryGetOptions{Namespace: r.PathValue("ns"), Name: r.PathValue("name"), UID: r.PathValue("uid")}
		for attempt := 0; ; attempt++ {
			vm, err := h.Repo.Get(r.Context(), opts)
			if err != nil {
				writeError(w, err)
				return
			}
			vm.Spec.DeletedAt = time.Now().Unix()
			vm.Status.State = microvmstore.DeletingState
			if _, err = h.Repo.Save(r.Context(), vm); err == nil {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			if !errors.Is(err, microvmstore.ErrConflict) || attempt == 4 {
				writeError(w, err)
				return
			}
		}
	})
	return mux
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, microvmstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, microvmstore.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, microvmstore.ErrInvalid), errors.Is(err, ramrod.ErrBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, ramrod.ErrUnavailable), errors.Is(err, ramrod.ErrNotLeader):
		status = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), status)
}
