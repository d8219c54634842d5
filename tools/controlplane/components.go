package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/flagz"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// Service network: any private range works, nothing routes to it here.
// The first address goes into the serving cert for in-cluster clients.
const (
	serviceCIDR      = "10.96.0.0/16"
	serviceFirstIP   = "10.96.0.1"
	serviceAccountIs = "https://kubernetes.default.svc"
)

// startEtcd runs etcd in this process. Only loopback URLs, no metrics
// listener, and zap at "error" so the caller's log is not flooded.
func startEtcd(ctx context.Context, cfg *config, ports ports) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Name = cfg.name
	ec.Dir = filepath.Join(cfg.dataDir, "etcd")
	client := url.URL{Scheme: "http", Host: hostPort(cfg.bind, ports.EtcdClient)}
	peer := url.URL{Scheme: "http", Host: hostPort(cfg.bind, ports.EtcdPeer)}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.Logger = "zap"
	ec.LogLevel = zapcore.ErrorLevel.String()
	ec.LogOutputs = []string{"stderr"}
	// The apiserver compacts every 5 minutes on its own; this just keeps a
	// long-lived test cluster's database from growing without bound if not.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	// Test clusters do not need their writes to survive a power cut, and an fsync per write
	// is what bounds a restore's speed on a small disk; opt-in, never the default.
	ec.UnsafeNoFsync = cfg.unsafeNoFsync

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, errInterrupted
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 60s")
	}
}

// etcdPortAttempts bounds startEtcdOnHeldPorts: each attempt after the first
// uses fresh ports.
const etcdPortAttempts = 5

// beforeEtcdBind, when set (by tests only), runs after etcd's ports are
// released and before etcd binds them: the window in which another process
// can take one.
var beforeEtcdBind func(ports)

// startEtcdOnHeldPorts releases etcd's held ports and starts etcd on them at
// once. If a port was taken in between (EADDRINUSE), it logs that and tries
// again on fresh ports, at most etcdPortAttempts times; ps then holds the
// ports etcd really uses.
func startEtcdOnHeldPorts(ctx context.Context, cfg *config, ps *ports, h *heldPorts) (*embed.Etcd, error) {
	for attempt := 1; ; attempt++ {
		h.releaseEtcd()
		if beforeEtcdBind != nil {
			beforeEtcdBind(*ps)
		}
		e, err := startEtcd(ctx, cfg, *ps)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || attempt == etcdPortAttempts {
			return e, err
		}
		klog.InfoS("etcd port taken between choosing and binding it; retrying on fresh ports",
			"attempt", attempt, "of", etcdPortAttempts, "clientPort", ps.EtcdClient, "peerPort", ps.EtcdPeer, "err", err)
		if err := freshEtcdPorts(cfg, ps, h); err != nil {
			return nil, err
		}
	}
}

// runAPIServer does what kube-apiserver's cobra command (NewAPIServerCommand)
// does, with one difference: its secure port is served on l, the listener
// choosePorts bound, so the port is never free between being chosen and
// being served (no other process can take it meanwhile). Like the command,
// it installs the process-wide SIGTERM/SIGINT handler
// (genericapiserver.SetupSignalContext) and drains on it by itself. That
// handler may exist only once per process; see runScheduler for why this
// matters, and runControllerManager for why it is not run through cobra
// either.
func runAPIServer(cfg *config, ports ports, p *pki, l net.Listener) error {
	args := []string{
		"--etcd-servers=" + etcdURL(cfg, ports),
		"--bind-address=" + cfg.bind,
		// Without it the apiserver looks for a non-loopback host interface to
		// advertise, which a sandbox may not have.
		"--advertise-address=" + cfg.bind,
		"--secure-port=" + strconv.Itoa(ports.APIServer), // l's port
		"--cert-dir=" + p.dir,
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-account-issuer=" + serviceAccountIs,
		"--api-audiences=" + serviceAccountIs,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		// The reconciler would publish the advertise address (loopback) in
		// the "kubernetes" Endpoints, which validation rejects, every 10 s.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		// Graceful shutdown: stop listening once in-flight requests are
		// drained and give open connections 2 s instead of the default 60 s.
		"--shutdown-send-retry-after=true",
		"--v=" + strconv.Itoa(cfg.verbosity),
	}
	s := apiserveroptions.NewServerRunOptions()
	ctx := genericapiserver.SetupSignalContext()
	nfs := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: nfs}
	if err := parseNamed(nfs, "kube-apiserver", args); err != nil {
		return err
	}
	s.SecureServing.Listener = l
	// The cobra command's PersistentPreRunE.
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	// Its RunE.
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()
	return apiserverapp.Run(ctx, completed)
}

// runControllerManager does what kube-controller-manager's cobra RunE does,
// but with our context. The cobra RunE runs on context.Background() (it only
// watches signals behind an alpha feature gate, off by default), so it would
// never stop: its open watches would then hold kube-apiserver's graceful
// shutdown for up to a minute.
func runControllerManager(ctx context.Context, cfg *config, p *pki) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &nfs
	args := []string{
		"--kubeconfig=" + cfg.kubeconfig,
		"--leader-elect=false",
		// "*" is every controller that is on by default: namespace,
		// garbage-collector, deployment, replicaset, statefulset, job,
		// cronjob, persistentvolume-binder, serviceaccount(-token),
		// endpoints, endpointslice, ...
		"--controllers=*",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		"--cluster-signing-cert-file=" + p.caCert,
		"--cluster-signing-key-file=" + p.caKey,
		"--use-service-account-credentials=false",
		"--secure-port=0", // no health/metrics server: nothing to collide on
		"--controller-shutdown-timeout=3s",
		"--v=" + strconv.Itoa(cfg.verbosity),
	}
	if err := parseNamed(nfs, "kube-controller-manager", args); err != nil {
		return err
	}
	// The cobra command's PersistentPreRunE.
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := logsapi.ValidateAndApply(s.Logs, utilfeature.DefaultFeatureGate); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, c.Complete())
}

// runScheduler does what kube-scheduler's cobra RunE does, minus the one
// thing that cannot share a process with kube-apiserver: that RunE calls
// server.SetupSignalHandler(), which panics when called a second time. So
// the scheduler gets our context instead, and stops when it is cancelled.
func runScheduler(ctx context.Context, cfg *config) error {
	opts := scheduleroptions.NewOptions()
	args := []string{
		"--kubeconfig=" + cfg.kubeconfig,
		"--leader-elect=false",
		"--secure-port=0", // no health/metrics server
		"--v=" + strconv.Itoa(cfg.verbosity),
	}
	if err := parseNamed(*opts.Flags, "kube-scheduler", args); err != nil {
		return err
	}
	// The cobra command's PersistentPreRunE: feature gates and emulation
	// version from flags.
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(opts.Logs, fg); err != nil {
		return err
	}
	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	klog.InfoS("kube-scheduler set up, running")
	return schedulerapp.Run(ctx, cc, sched)
}

// parseNamed parses args against a component's named flag sets, the way its
// cobra command would. A fresh FlagSet per component: nothing touches the
// process-global pflag.CommandLine, so flags are never registered twice.
func parseNamed(nfs cliflag.NamedFlagSets, name string, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	return fs.Parse(args)
}

func etcdURL(cfg *config, ports ports) string {
	return "http://" + hostPort(cfg.bind, ports.EtcdClient)
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}
