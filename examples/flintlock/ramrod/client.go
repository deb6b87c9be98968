// Package ramrod is a Go client of a ramrod cluster's HTTP API, over a
// node's unix socket or TCP: reads with revisions, writes, guarded writes
// and transactions, paged lists, watches that resume after a dropped
// connection, status and membership. Standard library only.
//
// Calls go to the first endpoint that answers. A node that is not the
// leader answers 421 with the leader's address, and the client follows it
// (over TCP). What is safe to retry (reads, lists, watches, and any request
// that never reached a node or that a non-leader refused) is retried with
// backoff on the other endpoints; a write whose fate is unknown is not
// retried, and its error says so.
package ramrod

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Config says where the cluster is and how to call it.
type Config struct {
	// Endpoints, tried in order: "unix:///run/ramrod/ramrod.sock" (or
	// "unix:PATH"), "http://host:port", "https://host:port" or
	// "host:port".
	Endpoints []string
	// TLS is for a cluster whose nodes serve HTTPS ([tls] in their
	// configs): its RootCAs must hold the cluster CA ([CAConfig] loads
	// one). With it, "host:port" endpoints and the leaders a 421 names are
	// reached over HTTPS.
	TLS *tls.Config
	// Token is the admin API's bearer token (status, members).
	Token string
	// Timeout bounds each request (default 30 s); watches have none.
	Timeout time.Duration
	// Attempts is how many rounds over the endpoints a retryable call makes
	// (default 8).
	Attempts int
	// Backoff is the first pause between rounds (default 50 ms), doubled
	// up to 2 s.
	Backoff time.Duration
}

// Client is safe for concurrent use.
type Client struct {
	cfg       Config
	endpoints []*endpoint
	tcp       *http.Client
	// scheme is how leaders are reached: "https" with Config.TLS.
	scheme    string
	mu        sync.Mutex
	preferred int
}

type endpoint struct {
	name   string
	base   string
	http   *http.Client
	stream *http.Client
}

// New returns a client of the nodes at cfg.Endpoints.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("ramrod: no endpoints")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	// No proxy from the environment: nodes are reached directly.
	c := &Client{cfg: cfg, scheme: "http", tcp: &http.Client{Transport: transport(cfg.TLS, nil), Timeout: cfg.Timeout}}
	if cfg.TLS != nil {
		c.scheme = "https"
	}
	for _, e := range cfg.Endpoints {
		ep, err := parseEndpoint(e, cfg.Timeout, cfg.TLS)
		if err != nil {
			return nil, err
		}
		c.endpoints = append(c.endpoints, ep)
	}
	return c, nil
}

// CAConfig is a TLS configuration that trusts the CA certificates in the
// PEM file caFile (a cluster's ca.pem, from `ramrod certs init`) and
// nothing else.
func CAConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ramrod: the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ramrod: the CA file %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// transport is an HTTP transport with tlsCfg (nil: Go's defaults) that
// dials with dial (nil: TCP).
func transport(tlsCfg *tls.Config, dial func(context.Context, string, string) (net.Conn, error)) *http.Transport {
	t := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64}
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg.Clone()
	}
	return t
}

func parseEndpoint(e string, timeout time.Duration, tlsCfg *tls.Config) (*endpoint, error) {
	if path, ok := strings.CutPrefix(e, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return nil, fmt.Errorf("ramrod: endpoint %q: no socket path", e)
		}
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return &endpoint{
			name:   e,
			base:   "http://ramrod",
			http:   &http.Client{Transport: transport(nil, dial), Timeout: timeout},
			stream: &http.Client{Transport: transport(nil, dial)},
		}, nil
	}
	base := e
	if !strings.Contains(base, "://") {
		if tlsCfg != nil {
			base = "https://" + base
		} else {
			base = "http://" + base
		}
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("ramrod: endpoint %q is not unix:PATH, http://host:port or https://host:port", e)
	}
	return &endpoint{
		name:   e,
		base:   u.Scheme + "://" + u.Host,
		http:   &http.Client{Transport: transport(tlsCfg, nil), Timeout: timeout},
		stream: &http.Client{Transport: transport(tlsCfg, nil)},
	}, nil
}

// CloseIdleConnections closes the connections kept for reuse.
func (c *Client) CloseIdleConnections() {
	c.tcp.CloseIdleConnections()
	for _, ep := range c.endpoints {
		ep.http.CloseIdleConnections()
		ep.stream.CloseIdleConnections()
	}
}

// KeyValue is a key with its value and revisions.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
}

// Written is what a write did.
type Written struct {
	// Revision of the change (the log index it was applied at).
	Revision uint64
	// ChangedKeys is how many keys it wrote or removed.
	ChangedKeys uint64
}

// Listing is a page of keys and the revision it was read at.
type Listing struct {
	KVs      []KeyValue
	Revision uint64
	More     bool
}

// request is one call, replayable against another node.
type request struct {
	method string
	path   string
	query  url.Values
	body   []byte
	// safe: may be sent again after a failure that leaves its fate unknown.
	safe   bool
	stream bool
}

type errorBody struct {
	Error          string  `json:"error"`
	LeaderID       *uint64 `json:"leader_id"`
	LeaderAddr     *string `json:"leader_addr"`
	Revision       *uint64 `json:"revision"`
	ModRevision    *uint64 `json:"mod_revision"`
	OldestRevision *uint64 `json:"oldest_revision"`
}

// unsent says a request never reached a node: it can go anywhere else.
type unsent struct{ err error }

func (u *unsent) Error() string { return u.err.Error() }
func (u *unsent) Unwrap() error { return u.err }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// do sends req, over the endpoints and with retries as its kind allows,
// and returns a successful answer (body unread) and its URL.
func (c *Client) do(ctx context.Context, req request) (*http.Response, string, error) {
	backoff := c.cfg.Backoff
	var last error
	for attempt := 0; attempt < c.cfg.Attempts; attempt++ {
		c.mu.Lock()
		first := c.preferred
		c.mu.Unlock()
		for i := range c.endpoints {
			idx := (first + i) % len(c.endpoints)
			resp, u, err := c.send(ctx, c.endpoints[idx], req)
			if err == nil {
				c.mu.Lock()
				c.preferred = idx
				c.mu.Unlock()
				return resp, u, nil
			}
			if ctx.Err() != nil {
				return nil, u, ctx.Err()
			}
			last = err
			var nu *unsent
			switch {
			case errors.As(err, &nu), errors.Is(err, ErrNotLeader):
				// Not applied anywhere: any request may go on.
			case req.safe && (errors.Is(err, ErrUnavailable) || isTransport(err)):
			default:
				return nil, u, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	var nu *unsent
	if errors.As(last, &nu) {
		return nil, "", fmt.Errorf("%w: no endpoint answered: %v", ErrUnavailable, nu.err)
	}
	return nil, "", last
}

// transportError is a failure after the request may have been sent.
type transportError struct{ err error }

func (t *transportError) Error() string { return t.err.Error() }
func (t *transportError) Unwrap() error { return t.err }

func isTransport(err error) bool {
	var t *transportError
	return errors.As(err, &t)
}

// send sends req to ep, following 421 answers to the leader (three hops at
// most).
func (c *Client) send(ctx context.Context, ep *endpoint, req request) (*http.Response, string, error) {
	base, client := ep.base, ep.http
	if req.stream {
		client = ep.stream
	}
	shown := ep.name
	for hop := 0; hop <= 3; hop++ {
		u := base + req.path
		if len(req.query) > 0 {
			u += "?" + req.query.Encode()
		}
		if hop > 0 {
			shown = u
		} else {
			shown = ep.name + req.path
		}
		var body io.Reader
		if req.body != nil {
			body = bytes.NewReader(req.body)
		}
		hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
		if err != nil {
			return nil, shown, err
		}
		if c.cfg.Token != "" {
			hr.Header.Set("Authorization", "Bearer "+c.cfg.Token)
		}
		resp, err := client.Do(hr)
		if err != nil {
			if isDialError(err) {
				return nil, shown, &unsent{fmt.Errorf("%s: %w", shown, err)}
			}
			return nil, shown, &transportError{fmt.Errorf("%s: %w", shown, err)}
		}
		if resp.StatusCode < 300 {
			return resp, shown, nil
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		var eb errorBody
		_ = json.Unmarshal(data, &eb)
		if resp.StatusCode == http.StatusMisdirectedRequest {
			if eb.LeaderAddr != nil && c.scheme+"://"+*eb.LeaderAddr != base {
				base, client = c.scheme+"://"+*eb.LeaderAddr, c.tcp
				if req.stream {
					client = &http.Client{Transport: transport(c.cfg.TLS, nil)}
				}
				continue
			}
			return nil, shown, fmt.Errorf("%w (asked %s)", ErrNotLeader, shown)
		}
		return nil, shown, statusError(shown, resp.StatusCode, data, &eb)
	}
	return nil, shown, fmt.Errorf("%w: redirects went round in circles (%s)", ErrNotLeader, shown)
}

func statusError(u string, status int, data []byte, eb *errorBody) error {
	msg := eb.Error
	if msg == "" {
		msg = strings.TrimSpace(string(data))
	}
	switch {
	case status == http.StatusPreconditionFailed && eb.Revision != nil && eb.ModRevision != nil:
		return &ConflictError{Revision: *eb.Revision, ModRevision: *eb.ModRevision}
	case status == http.StatusGone && eb.OldestRevision != nil && eb.Revision != nil:
		return &CompactedError{Oldest: *eb.OldestRevision, Current: *eb.Revision}
	}
	e := &StatusError{URL: u, Status: status, Message: msg}
	switch status {
	case http.StatusNotFound:
		e.kind = ErrNotFound
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		e.kind = ErrBadRequest
	case http.StatusUnauthorized, http.StatusForbidden:
		e.kind = ErrUnauthorized
	case http.StatusServiceUnavailable:
		e.kind = ErrUnavailable
	}
	return e
}

// keyPath is the path of key under /kv/, each part escaped.
func keyPath(key string) (string, error) {
	if key == "" || key == "batch" || key == "txn" || key == "watch" {
		return "", fmt.Errorf("%w: key %q cannot travel in a URL path (empty, or an endpoint's name)", ErrBadRequest, key)
	}
	parts := strings.Split(key, "/")
	for i, p := range parts {
		if p == "." || p == ".." {
			return "", fmt.Errorf("%w: key %q has a %q part, which a URL path cannot carry", ErrBadRequest, key, p)
		}
		parts[i] = url.PathEscape(p)
	}
	return "/kv/" + strings.Join(parts, "/"), nil
}

func decodeJSON(resp *http.Response, u string, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("ramrod: %s: the answer does not decode: %w", u, err)
	}
	return nil
}

// Get reads key (linearizable, on the leader).
func (c *Client) Get(ctx context.Context, key string) (*KeyValue, error) {
	return c.get(ctx, key, false)
}

// GetLocal reads key from the first endpoint's own state (possibly
// behind the leader).
func (c *Client) GetLocal(ctx context.Context, key string) (*KeyValue, error) {
	return c.get(ctx, key, true)
}

func (c *Client) get(ctx context.Context, key string, local bool) (*KeyValue, error) {
	p, err := keyPath(key)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if local {
		q.Set("local", "true")
	}
	resp, u, err := c.do(ctx, request{method: http.MethodGet, path: p, query: q, safe: true})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	value, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &transportError{fmt.Errorf("%s: %w", u, err)}
	}
	kv := &KeyValue{Key: key, Value: value}
	for name, dst := range map[string]*uint64{
		"X-Ramrod-Create-Revision": &kv.CreateRevision,
		"X-Ramrod-Mod-Revision":    &kv.ModRevision,
		"X-Ramrod-Version":         &kv.Version,
	} {
		n, err := strconv.ParseUint(resp.Header.Get(name), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ramrod: %s: header %s: %w", u, name, err)
		}
		*dst = n
	}
	return kv, nil
}

// Guard is the condition of a guarded write.
type Guard struct {
	modRevision *uint64
	absent      bool
}

// IfModRevision holds when the key's mod revision is rev (0: absent).
func IfModRevision(rev uint64) Guard { return Guard{modRevision: &rev} }

// IfAbsent holds when the key does not exist.
func IfAbsent() Guard { return Guard{absent: true} }

func (g Guard) query() url.Values {
	q := url.Values{}
	if g.modRevision != nil {
		q.Set("if_mod_revision", strconv.FormatUint(*g.modRevision, 10))
	}
	if g.absent {
		q.Set("if_absent", "true")
	}
	return q
}

type writtenJSON struct {
	Index       uint64 `json:"index"`
	ChangedKeys uint64 `json:"changed_keys"`
}

func (c *Client) write(ctx context.Context, method, key string, value []byte, q url.Values) (Written, error) {
	p, err := keyPath(key)
	if err != nil {
		return Written{}, err
	}
	body := value
	if body == nil && method == http.MethodPut {
		body = []byte{}
	}
	resp, u, err := c.do(ctx, request{method: method, path: p, query: q, body: body})
	if err != nil {
		return Written{}, err
	}
	var w writtenJSON
	if err := decodeJSON(resp, u, &w); err != nil {
		return Written{}, err
	}
	return Written{Revision: w.Index, ChangedKeys: w.ChangedKeys}, nil
}

// Put sets key to value. A failure after the request may have reached the
// leader is not retried (the write may have applied): the error says so.
func (c *Client) Put(ctx context.Context, key string, value []byte) (Written, error) {
	return c.write(ctx, http.MethodPut, key, value, nil)
}

// PutIf sets key to value if guard holds; else a *ConflictError.
func (c *Client) PutIf(ctx context.Context, key string, value []byte, guard Guard) (Written, error) {
	return c.write(ctx, http.MethodPut, key, value, guard.query())
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string) (Written, error) {
	return c.write(ctx, http.MethodDelete, key, nil, nil)
}

// DeleteIf removes key if guard holds; else a *ConflictError.
func (c *Client) DeleteIf(ctx context.Context, key string, guard Guard) (Written, error) {
	return c.write(ctx, http.MethodDelete, key, nil, guard.query())
}

// recordJSON is a key with its revisions, as the node sends it.
type recordJSON struct {
	Key            string  `json:"key"`
	Value          *string `json:"value"`
	CreateRevision uint64  `json:"create_revision"`
	ModRevision    uint64  `json:"mod_revision"`
	Version        uint64  `json:"version"`
}

func (r recordJSON) kv() KeyValue {
	kv := KeyValue{Key: r.Key, CreateRevision: r.CreateRevision, ModRevision: r.ModRevision, Version: r.Version}
	if r.Value != nil {
		kv.Value = []byte(*r.Value)
	}
	return kv
}

// List reads up to limit keys starting with prefix, after the key after
// (empty: from the start), linearizable; the listing's Revision is where a
// watch picks up with no gap.
func (c *Client) List(ctx context.Context, prefix, after string, limit int) (*Listing, error) {
	q := url.Values{"prefix": {prefix}, "limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	resp, u, err := c.do(ctx, request{method: http.MethodGet, path: "/kv", query: q, safe: true})
	if err != nil {
		return nil, err
	}
	var reply struct {
		KVs      []recordJSON `json:"kvs"`
		Revision uint64       `json:"revision"`
		More     bool         `json:"more"`
	}
	if err := decodeJSON(resp, u, &reply); err != nil {
		return nil, err
	}
	l := &Listing{Revision: reply.Revision, More: reply.More}
	for _, r := range reply.KVs {
		l.KVs = append(l.KVs, r.kv())
	}
	return l, nil
}

// ListAll reads every key starting with prefix, page by page; the revision
// is the first page's (a watch from it sees every later change, possibly
// some the later pages already show).
func (c *Client) ListAll(ctx context.Context, prefix string) ([]KeyValue, uint64, error) {
	var all []KeyValue
	var rev uint64
	after := ""
	for page := 0; ; page++ {
		l, err := c.List(ctx, prefix, after, 1000)
		if err != nil {
			return nil, 0, err
		}
		if page == 0 {
			rev = l.Revision
		}
		all = append(all, l.KVs...)
		if !l.More || len(l.KVs) == 0 {
			return all, rev, nil
		}
		after = l.KVs[len(l.KVs)-1].Key
	}
}

// Revision is the store's revision as the leader has it.
func (c *Client) Revision(ctx context.Context) (uint64, error) {
	l, err := c.List(ctx, "", "", 0)
	if err != nil {
		return 0, err
	}
	return l.Revision, nil
}

func utf8String(what string, b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: %s is not UTF-8 (JSON carries text)", ErrBadRequest, what)
	}
	return string(b), nil
}
