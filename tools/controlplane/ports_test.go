package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Run with: cd tools/controlplane && go test -run Ports -v .
// (links the whole control plane: ~1 minute and ~2 GB the first time.)

func testConfig(t *testing.T) *config {
	return &config{dataDir: t.TempDir(), name: "porttest", bind: "127.0.0.1", unsafeNoFsync: true}
}

func listenAny(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func portOf(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// Ports of DIR/ports.json are reused when free and replaced when held by
// someone else; every chosen port stays bound by the control plane.
func TestPortsChosenFromPortsJSONAndHeld(t *testing.T) {
	cfg := testConfig(t)
	taken := listenAny(t) // another process's server on the old apiserver port
	free := listenAny(t)
	freePort := portOf(free)
	free.Close()
	old := ports{EtcdClient: freePort, EtcdPeer: 0, APIServer: portOf(taken)}
	b, _ := json.Marshal(old)
	if err := os.WriteFile(filepath.Join(cfg.dataDir, "ports.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ps, held, err := choosePorts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	if ps.EtcdClient != freePort {
		t.Errorf("free port %d from ports.json not reused: got %d", freePort, ps.EtcdClient)
	}
	if ps.APIServer == portOf(taken) || ps.APIServer == 0 || ps.EtcdPeer == 0 {
		t.Errorf("taken or unset ports not replaced: %+v", ps)
	}
	for _, p := range []int{ps.EtcdClient, ps.EtcdPeer, ps.APIServer} {
		if l, err := net.Listen("tcp", hostPort(cfg.bind, p)); err == nil {
			l.Close()
			t.Errorf("port %d was released after being chosen", p)
		}
	}
	if held.apiServer == nil || portOf(held.apiServer) != ps.APIServer {
		t.Errorf("the apiserver's listener is not held for it")
	}
}

// Something takes etcd's client port in the instant between its release and
// etcd binding it: etcd starts anyway, on fresh ports.
func TestPortsEtcdRetriesOnFreshPortsWhenItsPortIsTaken(t *testing.T) {
	cfg := testConfig(t)
	ps, held, err := choosePorts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	first := ps
	var attempts []ports
	beforeEtcdBind = func(p ports) {
		attempts = append(attempts, p)
		if len(attempts) == 1 {
			listenAtT(t, cfg, p.EtcdClient)
		}
	}
	defer func() { beforeEtcdBind = nil }()

	e, err := startEtcdOnHeldPorts(context.Background(), cfg, &ps, held)
	if err != nil {
		t.Fatalf("etcd did not start after its port was taken: %v", err)
	}
	defer stopEtcd(e)
	if len(attempts) != 2 {
		t.Fatalf("want 2 attempts (taken, then fresh ports), got %d", len(attempts))
	}
	if ps.EtcdClient == first.EtcdClient || ps.EtcdPeer == first.EtcdPeer {
		t.Errorf("etcd kept a taken port: before %+v, after %+v", first, ps)
	}
	if got := e.Clients[0].Addr().(*net.TCPAddr).Port; got != ps.EtcdClient {
		t.Errorf("etcd serves clients on %d, ports say %d", got, ps.EtcdClient)
	}
}

// The retry is bounded: a port taken on every attempt ends start-up with EADDRINUSE.
func TestPortsEtcdGivesUpAfterBoundedAttempts(t *testing.T) {
	cfg := testConfig(t)
	ps, held, err := choosePorts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	n := 0
	beforeEtcdBind = func(p ports) { n++; listenAtT(t, cfg, p.EtcdPeer) }
	defer func() { beforeEtcdBind = nil }()
	e, err := startEtcdOnHeldPorts(context.Background(), cfg, &ps, held)
	if err == nil {
		stopEtcd(e)
		t.Fatal("etcd started although its peer port was taken every time")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("want EADDRINUSE, got %v", err)
	}
	if n != etcdPortAttempts {
		t.Errorf("want %d attempts, got %d", etcdPortAttempts, n)
	}
}

func listenAtT(t *testing.T, cfg *config, port int) {
	l, err := net.Listen("tcp", hostPort(cfg.bind, port))
	if err != nil {
		t.Fatalf("could not take port %d: %v", port, err)
	}
	t.Cleanup(func() { l.Close() })
}
