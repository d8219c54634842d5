// Command ys1000-controlplane runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) in one process on
// loopback, for tests that need genuine API semantics without a container
// runtime. There are no nodes; callers create Node objects themselves.
//
// Usage:
//
//	ys1000-controlplane --data-dir DIR --kubeconfig PATH [--name NAME] [--bind 127.0.0.1] [--v N]
//
// Start-up order matters: etcd, then the apiserver until /readyz is ok, then
// the admin kubeconfig (written only now, so its presence means "usable"),
// then controller-manager and scheduler, then DIR/ready.json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	genericapiserver "k8s.io/apiserver/pkg/server"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
)

// errInterrupted ends start-up on SIGTERM/SIGINT; it is a clean exit.
var errInterrupted = errors.New("interrupted")

type config struct {
	dataDir    string
	kubeconfig string
	name       string
	bind       string
	verbosity  int
	// unsafeNoFsync trades etcd's durability for speed (throw-away test clusters only).
	unsafeNoFsync bool
}

// readyInfo is DIR/ready.json, the file the Python side waits for.
type readyInfo struct {
	Name          string `json:"name"`
	Server        string `json:"server"`
	Kubeconfig    string `json:"kubeconfig"`
	PID           int    `json:"pid"`
	EtcdClientURL string `json:"etcd_client_url"`
	Version       string `json:"version"`
}

func main() {
	cfg := parseFlags()
	if err := run(cfg); err != nil && !errors.Is(err, errInterrupted) {
		klog.ErrorS(err, "control plane failed", "name", cfg.name)
		klog.Flush()
		os.Exit(1)
	}
	klog.InfoS("control plane stopped", "name", cfg.name)
	klog.Flush()
}

func parseFlags() *config {
	cfg := &config{}
	flag.StringVar(&cfg.dataDir, "data-dir", "", "directory for etcd data, PKI, ports.json and ready.json (required)")
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (required)")
	flag.StringVar(&cfg.name, "name", "local", "cluster/context/user name in the kubeconfig")
	flag.StringVar(&cfg.bind, "bind", "127.0.0.1", "loopback address every component listens on")
	flag.IntVar(&cfg.verbosity, "v", 0, "klog verbosity of the Kubernetes components")
	flag.BoolVar(&cfg.unsafeNoFsync, "unsafe-no-fsync", false, "etcd skips fsync: fast, but a crash may lose recent writes (test clusters only)")
	flag.Parse()
	if cfg.dataDir == "" || cfg.kubeconfig == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: ys1000-controlplane --data-dir DIR --kubeconfig PATH [--name NAME] [--bind 127.0.0.1] [--v N]")
		os.Exit(2)
	}
	if ip := net.ParseIP(cfg.bind); ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "--bind must be a loopback IP address, got %q\n", cfg.bind)
		os.Exit(2)
	}
	var err error
	for _, p := range []*string{&cfg.dataDir, &cfg.kubeconfig} {
		if *p, err = filepath.Abs(*p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	return cfg
}

func run(cfg *config) error {
	// stop is cancelled by the first SIGTERM/SIGINT; a second one exits at
	// once. Registered before anything else so that a signal at any point of
	// start-up is honoured. kube-apiserver registers its own handler later
	// (every registered channel receives the signal) and drains on it.
	stop, cancelStop := context.WithCancel(context.Background())
	defer cancelStop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var signalled atomic.Bool
	go func() {
		klog.InfoS("shutting down", "signal", <-sigs)
		signalled.Store(true)
		cancelStop()
		klog.InfoS("second signal, exiting now", "signal", <-sigs)
		klog.Flush()
		os.Exit(1)
	}()

	// All three components apply the same logging configuration to the one
	// global klog; by default a second apply is an error.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged

	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return err
	}
	// A second instance on the same directory would wait forever on etcd's
	// own lock (and delete the first one's ready.json): fail fast instead.
	unlock, err := lockDataDir(cfg.dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	readyPath := filepath.Join(cfg.dataDir, "ready.json")
	// A ready.json from an earlier run must not be mistaken for this one.
	if err := os.Remove(readyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	p := newPKI(filepath.Join(cfg.dataDir, "pki"))
	if err := p.ensure(net.ParseIP(cfg.bind), net.ParseIP(serviceFirstIP)); err != nil {
		return err
	}

	// The ports stay bound from here until their component serves them.
	ports, held, err := choosePorts(cfg)
	if err != nil {
		return fmt.Errorf("choosing ports: %w", err)
	}
	defer held.close() // whatever start-up did not hand over

	start := time.Now()
	etcd, err := startEtcdOnHeldPorts(stop, cfg, &ports, held)
	if err != nil {
		return err
	}
	defer stopEtcd(etcd)
	if err := savePorts(cfg, ports); err != nil {
		return err
	}
	klog.InfoS("etcd ready", "url", etcdURL(cfg, ports), "after", time.Since(start))

	// Each component reports here when its goroutine returns. Any return
	// before shutdown was asked for means a dead component: exit non-zero.
	type exit struct {
		component string
		err       error
	}
	exits := make(chan exit, 4)
	go func() {
		// etcd's Err channel reports fatal errors of the running server.
		if err, ok := <-etcd.Err(); ok && err != nil {
			exits <- exit{"etcd", err}
		}
	}()

	// kube-apiserver serves (and closes) this listener from now on.
	apiListener := held.apiServer
	held.apiServer = nil
	apiserverDone := make(chan struct{})
	go func() {
		defer close(apiserverDone)
		exits <- exit{"kube-apiserver", runAPIServer(cfg, ports, p, apiListener)}
	}()
	var clients sync.WaitGroup // controller-manager and scheduler, once started

	// However run ends from here on, stop the components before etcd
	// (deferred earlier, so it runs after this): the apiserver drains
	// quickly once controller-manager and scheduler have closed their
	// watches, and etcd closes quickly once the apiserver's clients are gone.
	// Everything is bounded: etcd fsyncs each commit, so a shutdown cut
	// short loses nothing.
	defer func() {
		os.Remove(readyPath)
		cancelStop()
		if !signalled.Load() {
			// Only kube-apiserver's own signal handler can stop it; this
			// feeds that handler a fake SIGTERM. Not after a real signal:
			// the handler would take it as the second one and os.Exit(1).
			genericapiserver.RequestShutdown()
		}
		allDone := make(chan struct{})
		go func() { clients.Wait(); <-apiserverDone; close(allDone) }()
		select {
		case <-allDone:
		case <-time.After(5 * time.Second):
			klog.InfoS("components still stopping after 5s, stopping anyway")
		}
	}()

	server := "https://" + hostPort(cfg.bind, ports.APIServer)
	restCfg := adminRESTConfig(server, p)

	// waitFor runs a readiness check while watching for signals and dead
	// components, so a failed start ends promptly instead of timing out.
	waitFor := func(what string, timeout time.Duration, check func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(stop, timeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- poll(ctx, check) }()
		select {
		case err := <-done:
			if stop.Err() != nil {
				return errInterrupted
			}
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
			return nil
		case e := <-exits:
			return fmt.Errorf("%s exited during start-up: %v", e.component, e.err)
		}
	}

	if err := waitFor("kube-apiserver /readyz", 2*time.Minute, readyzCheck(restCfg)); err != nil {
		return err
	}
	klog.InfoS("kube-apiserver ready", "server", server, "after", time.Since(start))

	if err := writeKubeconfig(cfg, server, p); err != nil {
		return err
	}

	// Controller-manager and scheduler stop on stop (a signal, or run
	// returning); the apiserver stops on its own signal handler.
	clients.Go(func() { exits <- exit{"kube-controller-manager", runControllerManager(stop, cfg, p)} })
	clients.Go(func() { exits <- exit{"kube-scheduler", runScheduler(stop, cfg)} })

	// The controller-manager counts as working once its serviceaccount
	// controller has made "default" in namespace "default": pods cannot be
	// created before that anyway, so callers need it too.
	if err := waitFor("controller-manager (default ServiceAccount)", 2*time.Minute, defaultSACheck(restCfg)); err != nil {
		return err
	}

	info := readyInfo{
		Name:          cfg.name,
		Server:        server,
		Kubeconfig:    cfg.kubeconfig,
		PID:           os.Getpid(),
		EtcdClientURL: etcdURL(cfg, ports),
		Version:       version.Get().GitVersion,
	}
	if err := writeJSONAtomic(readyPath, info); err != nil {
		return err
	}
	klog.InfoS("control plane ready", "name", cfg.name, "server", server, "after", time.Since(start))

	select {
	case e := <-exits:
		return fmt.Errorf("%s exited: %v", e.component, e.err)
	case <-stop.Done():
	}

	return nil // the deferred functions above stop everything
}

func stopEtcd(e *embed.Etcd) {
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		klog.InfoS("etcd did not stop within 3s")
	}
}

// poll calls check every 250ms until it returns nil or ctx ends.
func poll(ctx context.Context, check func(context.Context) error) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
