package ramrod

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		send := func(m WatchMessage) bool {
			select {
			case out <- m:
				return true
			case <-ctx.Done():
				return false
			}
		}
		backoff := c.cfg.Backoff
		for {
			err := readWatch(stream, &from, send)
			stream.Body.Close()
			if ctx.Err() != nil {
				return
			}
			var ce *CompactedError
			if errors.As(err, &ce) || errors.Is(err, ErrBadRequest) {
				send(WatchMessage{Err: err})
				return
			}
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				stream, err = c.openWatch(ctx, opts, from)
				if err == nil {
					backoff = c.cfg.Backoff
					break
				}
				if errors.As(err, &ce) || errors.Is(err, ErrBadRequest) {
					send(WatchMessage{Err: err})
					return
				}
				backoff = min(backoff*2, 2*time.Second)
			}
		}
	}()
	return out, nil
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

// readWatch passes the stream's lines on until it ends; from follows the
// revisions reported.
func readWatch(resp *http.Response, from *uint64, send func(WatchMessage) bool) error {
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
			if e.Revision() <= *from {
				continue
			}
			*from = e.Revision()
			if !send(WatchMessage{Event: e}) {
				return context.Canceled
			}
		case l.Progress != nil:
			if l.Progress.Revision > *from {
				*from = l.Progress.Revision
			}
			if !send(WatchMessage{Progress: *from}) {
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
