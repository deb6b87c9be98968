package ramrod

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A watch whose node goes away keeps trying to reopen; cancelling it then
// (while no stream is open) closes the channel cleanly. An earlier version
// closed the body of a stream variable that a failed reopen had set to nil.
func TestWatchCancelledWhileReopening(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kv/watch" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, `{"event":{"kind":"put","key":"k","value":"v","create_revision":5,"mod_revision":5,"version":1}}`)
	}))
	c, err := New(Config{Endpoints: []string{srv.URL}, Attempts: 1, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := c.Watch(ctx, WatchOptions{Key: "k", FromRevision: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := <-ch
	if m.Event == nil || m.Event.Revision() != 5 {
		t.Fatalf("first message: %+v", m)
	}
	// The node is gone: every reopen is refused, and retried.
	srv.Close()
	time.Sleep(50 * time.Millisecond)
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				// A cancellation hook runs in a goroutine of its own:
				// give a stray one the time to run (and fail the
				// test binary) before the test ends.
				time.Sleep(200 * time.Millisecond)
				return
			}
			if m.Event != nil {
				t.Fatalf("an event after the node went away: %+v", m.Event)
			}
		case <-deadline:
			t.Fatal("the watch did not end after its context was cancelled")
		}
	}
}
