// Package testcluster runs clusters of real `ramrod serve` processes on
// loopback for the tests: each node's TCP socket is bound here first and
// handed to the child as descriptor 3 (`--listen-fd 3`), so no test races
// another for a port; each node also serves a private unix socket. While a
// node is down its TCP port is kept and refuses connections at once.
//
// The ramrod binary is RAMROD_BIN, else the workspace's release build.
package testcluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ramrod.dev/flintlock/ramrod"
)

// Token is the admin token of every test node.
const Token = "flintlock-test-token"

// ClusterSecret signs the requests between test nodes.
const ClusterSecret = "flintlock-test-cluster-secret"

// Cluster is a set of ramrod processes.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	Nodes []*Node
	// ExtraTOML is appended to every node's config (tables only).
	ExtraTOML string
	// tls: the nodes serve HTTPS and authenticate each other by
	// certificates under a CA in dir/certs (no cluster secret).
	tls bool
}

// Node is one member.
type Node struct {
	ID     int
	Addr   string
	Socket string
	ln     *net.TCPListener
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// While the node is down: closing park stops the goroutine that keeps
	// its port, which closes parked when it has.
	park, parked chan struct{}
}

// unpark stops keeping the port (the node is starting, or the test ends)
// and waits until nothing accepts on it here.
func (n *Node) unpark() {
	if n.park != nil {
		close(n.park)
		<-n.parked
		n.park, n.parked = nil, nil
	}
}

// Binary is the ramrod executable the tests run.
func Binary(t testing.TB) string {
	if b := os.Getenv("RAMROD_BIN"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	b := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "target", "release", "ramrod")
	if _, err := os.Stat(b); err != nil {
		t.Skipf("no ramrod binary: set RAMROD_BIN or run `cargo build --release` (%v)", err)
	}
	return b
}

// Start starts an n-node cluster; node 1 creates it. The processes are
// killed when the test ends.
func Start(t testing.TB, n int, extraTOML string) *Cluster {
	t.Helper()
	return start(t, n, extraTOML, false)
}

// StartTLS is [Start] with TLS: `ramrod certs` makes a cluster CA and a
// certificate per node, the nodes serve HTTPS and authenticate each other
// by certificate alone. [Cluster.CAFile] is the CA's certificate.
func StartTLS(t testing.TB, n int, extraTOML string) *Cluster {
	t.Helper()
	return start(t, n, extraTOML, true)
}

// CAFile is the cluster CA's certificate (a TLS cluster's).
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "certs", "ca.pem") }

func (c *Cluster) certs(args ...string) {
	out, err := exec.Command(c.bin, append([]string{"certs"}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ramrod certs %v: %v\n%s", args, err, out)
	}
}

func start(t testing.TB, n int, extraTOML string, tls bool) *Cluster {
	dir, err := os.MkdirTemp("", "rr")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: Binary(t), dir: dir, ExtraTOML: extraTOML, tls: tls}
	if tls {
		certs := filepath.Join(dir, "certs")
		c.certs("init", "--dir", certs)
		for id := 1; id <= n; id++ {
			c.certs("node", "--dir", certs, "--id", strconv.Itoa(id), "--host", "127.0.0.1")
		}
	}
	for id := 1; id <= n; id++ {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, &Node{
			ID:     id,
			Addr:   ln.Addr().String(),
			Socket: filepath.Join(dir, fmt.Sprintf("n%d.sock", id)),
			ln:     ln,
		})
	}
	for _, node := range c.Nodes {
		c.writeConfig(node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			c.Kill(node.ID)
			node.unpark()
			node.ln.Close()
		}
		os.RemoveAll(dir)
	})
	for _, node := range c.Nodes {
		c.Restart(node.ID)
	}
	return c
}

func (c *Cluster) writeConfig(n *Node) {
	var b strings.Builder
	fmt.Fprintf(&b, "id = %d\nlisten = %q\ndata-dir = \"node-%d\"\ntoken = %q\nlisten-unix = %q\n",
		n.ID, n.Addr, n.ID, Token, n.Socket)
	if c.tls {
		fmt.Fprintf(&b, "\n[tls]\nca-file = \"certs/ca.pem\"\ncert-file = \"certs/node-%d.pem\"\nkey-file = \"certs/node-%d.key\"\n\n", n.ID, n.ID)
	} else {
		fmt.Fprintf(&b, "cluster-secret = %q\n\n", ClusterSecret)
	}
	b.WriteString("[raft]\nheartbeat-ms = 50\nelection-min-ms = 300\nelection-max-ms = 600\n\n")
	for _, p := range c.Nodes {
		if p.ID != n.ID {
			fmt.Fprintf(&b, "[[peers]]\nid = %d\naddr = %q\n\n", p.ID, p.Addr)
		}
	}
	b.WriteString(c.ExtraTOML)
	if err := os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("node-%d.toml", n.ID)), []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// Node is member id.
func (c *Cluster) Node(id int) *Node { return c.Nodes[id-1] }

// Restart starts node id's process (again) on its socket.
func (c *Cluster) Restart(id int) {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		c.t.Fatalf("node %d is running", id)
	}
	n.unpark()
	f, err := n.ln.File()
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(c.bin, "serve", "--config", filepath.Join(c.dir, fmt.Sprintf("node-%d.toml", id)), "--listen-fd", "3")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	logf, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("node-%d.log", id)))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.cmd, n.exited = cmd, exited
	c.waitSocket(n)
}

func (c *Cluster) waitSocket(n *Node) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unix", n.Socket); err == nil {
			conn.Close()
			return
		}
		select {
		case <-n.exited:
			log, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node-%d.log", n.ID)))
			c.t.Fatalf("node %d exited at start-up:\n%s", n.ID, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.t.Fatalf("node %d never listened on %s", n.ID, n.Socket)
}

// Kill sends SIGKILL to node id (no clean shutdown) and waits for it.
func (c *Cluster) Kill(id int) { c.stop(id, syscall.SIGKILL) }

// Stop sends SIGTERM to node id (a clean shutdown) and waits for it.
func (c *Cluster) Stop(id int) { c.stop(id, syscall.SIGTERM) }

func (c *Cluster) stop(id int, sig syscall.Signal) {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
	// Keep the port until the node is back, so no other process takes it;
	// what connects meanwhile is accepted and closed at once (a refused
	// connection would need the port released).
	park, parked := make(chan struct{}), make(chan struct{})
	n.park, n.parked = park, parked
	go func() {
		defer close(parked)
		defer func() { _ = n.ln.SetDeadline(time.Time{}) }()
		for {
			select {
			case <-park:
				return
			default:
			}
			_ = n.ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
			conn, err := n.ln.Accept()
			if err == nil {
				conn.Close()
				continue
			}
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return
			}
		}
	}()
}

// Client is a client of the given nodes' unix sockets (all when none).
func (c *Cluster) Client(t testing.TB, ids ...int) *ramrod.Client {
	if len(ids) == 0 {
		for _, n := range c.Nodes {
			ids = append(ids, n.ID)
		}
	}
	var eps []string
	for _, id := range ids {
		eps = append(eps, "unix://"+c.Node(id).Socket)
	}
	cfg := ramrod.Config{Endpoints: eps, Token: Token, Timeout: 10 * time.Second}
	if c.tls {
		// Leaders a 421 names are reached over HTTPS.
		tlsCfg, err := ramrod.CAConfig(c.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = tlsCfg
	}
	cl, err := ramrod.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Leader waits for a leader and returns its id.
func (c *Cluster) Leader(t testing.TB) int {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			n.mu.Lock()
			up := n.cmd != nil
			n.mu.Unlock()
			if !up {
				continue
			}
			cl := c.Client(t, n.ID)
			s, err := cl.Status(t.Context())
			cl.CloseIdleConnections()
			if err == nil && s.Role == "Leader" {
				return n.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no leader")
	return 0
}
