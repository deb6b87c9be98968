// Command flintlock-sim is a small daemon shaped like flintlockd with the
// ramrod store backend: it keeps its microVM records in a ramrod cluster
// (through the node beside it, on its unix socket), reconciles them off a
// watch, and serves a tiny HTTP API to create, list and delete microVMs.
//
//	flintlock-sim --store-backend=ramrod \
//	    --ramrod-endpoint=unix:///run/ramrod/ramrod.sock \
//	    --ramrod-host-id=host-1 --ramrod-token-file=/etc/ramrod/token \
//	    --http-endpoint=127.0.0.1:9090
//
//	curl -X POST 127.0.0.1:9090/v1/microvms -d '{"namespace":"ns","name":"vm1","vcpu":2,"memory_mb":512}'
//	curl 127.0.0.1:9090/v1/microvms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"ramrod.dev/flintlock/internal/sim"
	"ramrod.dev/flintlock/microvmstore"
	"ramrod.dev/flintlock/ramrod"
)

type endpoints []string

func (e *endpoints) String() string { return strings.Join(*e, ",") }
func (e *endpoints) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*e = append(*e, p)
		}
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "flintlock-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var eps endpoints
	backend := flag.String("store-backend", "ramrod", "where microVM records are kept (only \"ramrod\")")
	flag.Var(&eps, "ramrod-endpoint", "ramrod node(s): unix:///path/to/socket or http://host:port (repeat or comma-separate)")
	host := flag.String("ramrod-host-id", "", "this host's id: its records live under flintlock/v1/hosts/<id>/ (default: the hostname)")
	tokenFile := flag.String("ramrod-token-file", "", "file holding the ramrod admin token (for status)")
	keep := flag.Int("ramrod-keep-versions", microvmstore.DefaultKeepVersions, "versions of each microVM to keep")
	httpEndpoint := flag.String("http-endpoint", "127.0.0.1:9090", "where the API listens")
	resync := flag.Duration("resync-period", 30*time.Second, "how often every microVM is reconciled again")
	logFormat := flag.String("log-format", "text", "text or json")
	flag.Parse()

	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	switch *logFormat {
	case "text":
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return fmt.Errorf("--log-format %q: text or json", *logFormat)
	}
	log := slog.New(handler)
	if *backend != "ramrod" {
		return fmt.Errorf("--store-backend %q: only \"ramrod\" is built in", *backend)
	}
	if len(eps) == 0 {
		return errors.New("--ramrod-endpoint is required")
	}
	if *host == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		*host = h
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--ramrod-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	client, err := ramrod.New(ramrod.Config{Endpoints: eps, Token: token})
	if err != nil {
		return err
	}
	repo, err := microvmstore.New(client, microvmstore.Options{HostID: *host, KeepVersions: *keep})
	if err != nil {
		return err
	}
	h := &sim.Host{Client: client, Repo: repo, Resync: *resync, Log: log}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *httpEndpoint)
	if err != nil {
		return fmt.Errorf("--http-endpoint: %w", err)
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server", "error", err)
			stop()
		}
	}()
	log.Info("flintlock-sim running", "host", *host, "api", ln.Addr().String(), "ramrod", eps.String())
	if err := h.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
