package ramrod

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// EventType says what a change did.
type EventType int

const (
	// Put: the key was set.
	Put EventType = iota
	// Delete: the key was removed.
	Delete
)

// Event is one change: the key's record after it (for a delete, no value
// and the deletion's revision as ModRevision).
type Event struct {
	Type EventType
	KV   KeyValue
}

// Revision is the change's revision.
func (e Event) Revision() uint64 { return e.KV.ModRevision }

// WatchOptions says what to watch.
type WatchOptions struct {
	// Key, or (if IsPrefix) every key starting with it.
	Key      string
	IsPrefix bool
	// FromRevision: every change after it (0: from now).
	FromRevision uint64
	// NoValues leaves values out of events.
	NoValues bool
}

// WatchMessage is a change, a progress report (every change up to
// Progress has been sent), or the error that ended the watch (the last
// message before the channel closes).
type WatchMessage struct {
	Event    *Event
	Progress uint64
	Err      error
}

type watchLine struct {
	Event *struct {
		Kind string `json:"kind"`
		recordJSON
	} `json:"event"`
	Progress *struct {
		Revision uint64 `json:"revision"`
	} `json:"progress"`
	End *struct {
		Reason         string  `json:"reason"`
		Error          string  `json:"error"`
		OldestRevision *uint64 `json:"oldest_revision"`
		Revision       *uint64 `json:"revision"`
	} `json:"end"`
}

// errStreamEnded: the node ended the stream (shutdown, lagged) or the
// connection broke; the watch resumes elsewhere.
var errStreamEnded = errors.New("the watch stream ended")

// Watch follows changes, in revision order and exactly once, from the
// first endpoint that serves it. When a stream breaks (the node stops, the
// connection drops, the watcher fell behind) it resumes from the last
// revision it reported, on the next endpoint that answers. A watch from a
// revision no node holds ends with a *CompactedError (list again). The
// channel closes after the message carrying the error that ended it, or
// when ctx is done.
func (c *Client) Watch(ctx context.Context, opts WatchOptions) (<-chan WatchMessage, error) {
	from := opts.FromRevision
	if from == 0 {
		// "From now", pinned to a revision, so a resume misses nothing.
		rev, err := c.Revision(ctx)
		if err != nil {
			return nil, err
		}
		from = rev
	}
	stream, err := c.openWatch(ctx, opts, from)
	if err != nil {
		return nil, err
	}
	out := make(chan WatchMessage, 64)
	go func() {
		defer close(out)
		// A read blocked on the stream ends when ctx does. Each stream's
		// hook closes that stream's own body: the variable is reassigned
		// (and nil after a failed reopen) while an older hook may run.
		closeOnDone := func(body io.Closer) func() bool {
			return context.AfterFunc(ctx, func() { body.Close() })
		}
		stop := closeOnDone(stream.Body)
		defer func() { stop() }()
		send := func(m WatchMessage) bool {
			select {
			case out <- m:
				return true
			case <-ctx.Done():
				return false
			}
		}
		cur := &cursor{complete: from, last: from}
		backoff := c.cfg.Backoff
		for {
			err := readWatch(stream, cur, send)
			stop()
			stream.Body.Close()
			if ctx.Err() != nil {
				return
			}
			if fatalWatchError(err) {
				send(WatchMessage{Err: err})
				return
			}
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				next, err := c.openWatch(ctx, opts, cur.complete)
				if err == nil {
					stream = next
					stop = closeOnDone(stream.Body)
					backoff = c.cfg.Backoff
					break
				}
				if fatalWatchError(err) {
					send(WatchMessage{Err: err})
					return
				}
				backoff = min(backoff*2, 2*time.Second)
			}
		}
	}()
	return out, nil
}

// fatalWatchError: resuming cannot help (compacted, refused, an error
// answer other than "unavailable").
func fatalWatchError(err error) bool {
	var ce *CompactedError
	var se *StatusError
	return errors.As(err, &ce) || (errors.As(err, &se) && !errors.Is(err, ErrUnavailable))
}

func (c *Client) openWatch(ctx context.Context, opts WatchOptions, from uint64) (*http.Response, error) {
	q := url.Values{"from_revision": {strconv.FormatUint(from, 10)}}
	if opts.IsPrefix {
		q.Set("prefix", opts.Key)
	} else {
		q.Set("key", opts.Key)
	}
	if opts.NoValues {
		q.Set("values", "false")
	}
	resp, _, err := c.do(ctx, request{method: http.MethodGet, path: "/kv/watch", query: q, safe: true, stream: true})
	return resp, err
}

// cursor is how far a watch has got. One revision may hold several
// changes (a transaction), and a stream can break between them: every
// change up to complete has been passed on, and sent of those at revision
// last (when last > complete).
type cursor struct {
	complete, last uint64
	sent           int
}

// readWatch passes the stream's lines on until it ends; the stream starts
// after cur.complete, and the changes at cur.last already passed on are
// skipped (the node sends a revision's changes in the same order every
// time).
func readWatch(resp *http.Response, cur *cursor, send func(WatchMessage) bool) error {
	skip := 0
	if cur.last > cur.complete {
		skip = cur.sent
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l watchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%w: a line does not decode: %v", errStreamEnded, err)
		}
		switch {
		case l.Event != nil:
			e := &Event{KV: l.Event.kv()}
			if l.Event.Kind == "delete" {
				e.Type = Delete
			}
			rev := e.Revision()
			switch {
			case rev <= cur.complete:
				continue
			case rev == cur.last && skip > 0:
				skip--
				continue
			case rev > cur.last:
				cur.complete, cur.last, cur.sent, skip = rev-1, rev, 0, 0
			}
			cur.sent++
			if !send(WatchMessage{Event: e}) {
				return context.Canceled
			}
		case l.Progress != nil:
			if p := l.Progress.Revision; p >= cur.last && p > cur.complete {
				cur.complete, cur.last, cur.sent, skip = p, p, 0, 0
			}
			if !send(WatchMessage{Progress: cur.complete}) {
				return context.Canceled
			}
		case l.End != nil:
			if l.End.Reason == "compacted" && l.End.OldestRevision != nil && l.End.Revision != nil {
				return &CompactedError{Oldest: *l.End.OldestRevision, Current: *l.End.Revision}
			}
			return fmt.Errorf("%w: %s", errStreamEnded, l.End.Error)
		}
	}
	return fmt.Errorf("%w: %v", errStreamEnded, sc.Err())
}
