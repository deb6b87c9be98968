package microvmstore_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ramrod.dev/flintlock/internal/testcluster"
	"ramrod.dev/flintlock/microvmstore"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestFlintlockBenchmark is a benchmark, not a timed test: it runs only
// with RAMROD_BENCH=1 (scripts/bench.sh) and writes
// target/bench-reports/flintlock.md. 5,000 microVMs x 10 versions, specs of
// 2-20 KB with base64 metadata, saved over the leader's unix socket by 16
// workers on a 3-node cluster under the default policy.
func TestFlintlockBenchmark(t *testing.T) {
	if os.Getenv("RAMROD_BENCH") == "" {
		t.Skip("a benchmark: set RAMROD_BENCH=1 (scripts/bench.sh runs it)")
	}
	vms := envInt("RAMROD_BENCH_VMS", 5000)
	versions := envInt("RAMROD_BENCH_VERSIONS", 10)
	const workers = 16
	c := testcluster.Start(t, 3, "")
	ctx := t.Context()
	leader := c.Leader(t)
	cl := c.Client(t, leader)
	r := repo(t, cl, "host-bench")

	// Specs of 2-20 KB: the metadata (base64 cloud-init) makes the size.
	rng := mrand.New(mrand.NewPCG(7, 11))
	meta := func() string {
		n := 1500 + rng.IntN(13500)
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	recs := make([]*microvmstore.MicroVM, vms)
	var specBytes int64
	for i := range recs {
		recs[i] = spec(fmt.Sprintf("ns-%02d", i%20), fmt.Sprintf("vm-%05d", i), 2)
		recs[i].Spec.Metadata = map[string]string{"user-data": meta()}
		specBytes += int64(len(recs[i].Spec.Metadata["user-data"]))
	}

	type sample struct {
		at                   time.Duration
		logBytes, logEntries uint64
		chain                uint64
	}
	var samples []sample
	var written atomic.Int64
	lat := make([]float64, 0, vms*versions)
	var latMu sync.Mutex
	start := time.Now()
	sampler := time.NewTicker(2 * time.Second)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-sampler.C:
				var s sample
				s.at = time.Since(start)
				for _, n := range c.Nodes {
					st, err := c.Client(t, n.ID).Status(ctx)
					if err != nil {
						continue
					}
					s.logBytes = max(s.logBytes, st.Log.Bytes)
					s.logEntries = max(s.logEntries, st.Log.Entries)
					if st.CurrentSnapshot != nil {
						s.chain = max(s.chain, st.CurrentSnapshot.ChainBytes)
					}
				}
				latMu.Lock()
				samples = append(samples, s)
				latMu.Unlock()
			}
		}
	}()
	for round := 0; round < versions; round++ {
		next := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					vm := *recs[i]
					vm.Spec.VCPU = int64(2 + round)
					t0 := time.Now()
					s, err := r.Save(ctx, &vm)
					d := time.Since(t0).Seconds() * 1e3
					if err != nil {
						t.Errorf("save %s: %v", vm.ID, err)
						return
					}
					recs[i] = s
					written.Add(int64(len(s.Spec.Metadata["user-data"])))
					latMu.Lock()
					lat = append(lat, d)
					latMu.Unlock()
				}
			}()
		}
		for i := range recs {
			next <- i
		}
		close(next)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	elapsed := time.Since(start)
	sampler.Stop()
	close(stop)
	sort.Float64s(lat)

	// GetAll of the host's records, three times.
	var getAll []float64
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		all, err := r.GetAll(ctx, nil)
		if err != nil || len(all) != vms {
			t.Fatalf("GetAll: %d, %v", len(all), err)
		}
		getAll = append(getAll, time.Since(t0).Seconds()*1e3)
	}
	sort.Float64s(getAll)
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	latMu.Lock()
	defer latMu.Unlock()
	var maxLog, maxEntries, maxChain uint64
	for _, s := range samples {
		maxLog, maxEntries, maxChain = max(maxLog, s.logBytes), max(maxEntries, s.logEntries), max(maxChain, s.chain)
	}
	mb := func(b float64) string { return fmt.Sprintf("%.1f MB", b/(1<<20)) }
	var b strings.Builder
	fmt.Fprintf(&b, "# Flintlock benchmark\n\n3 `ramrod serve` processes (release) on loopback, %d cores; "+
		"the Go `microvmstore` over the leader's unix socket, %d workers; %d microVMs x %d versions, "+
		"specs of 2-20 KB (base64 metadata, %s of metadata per version round); the default policy (`adaptive`).\n\n",
		runtime.NumCPU(), workers, vms, versions, mb(float64(specBytes)))
	fmt.Fprintf(&b, "| | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| saves | %d in %.1f s (%.0f/s) |\n", len(lat), elapsed.Seconds(), float64(len(lat))/elapsed.Seconds())
	fmt.Fprintf(&b, "| `Save` p50 / p99 / max | %.2f / %.2f / %.2f ms |\n", pct(lat, 0.5), pct(lat, 0.99), lat[len(lat)-1])
	fmt.Fprintf(&b, "| `GetAll` of %d records (median of 3) | %.0f ms |\n", vms, getAll[1])
	fmt.Fprintf(&b, "| metadata written (all versions) | %s |\n", mb(float64(written.Load())))
	fmt.Fprintf(&b, "| largest log seen on any node | %s, %d entries |\n", mb(float64(maxLog)), maxEntries)
	fmt.Fprintf(&b, "| leader's log at the end | %s, %d entries |\n", mb(float64(st.Log.Bytes)), st.Log.Entries)
	if st.CurrentSnapshot != nil {
		fmt.Fprintf(&b, "| leader's snapshot chain at the end | %s |\n", mb(float64(st.CurrentSnapshot.ChainBytes)))
	}
	fmt.Fprintf(&b, "| largest snapshot chain seen | %s |\n", mb(float64(maxChain)))
	fmt.Fprintf(&b, "\nLog size over the run (largest on any node, every 2 s): ")
	step := int(math.Max(1, float64(len(samples))/12))
	for i := 0; i < len(samples); i += step {
		fmt.Fprintf(&b, "%.0fs %s; ", samples[i].at.Seconds(), mb(float64(samples[i].logBytes)))
	}
	b.WriteString("\n")
	report := b.String()
	fmt.Print(report)
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(file), "..", "..", "..", "target", "bench-reports")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "flintlock.md"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
}
