package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ports are the loopback TCP ports of one instance. They are kept in
// DIR/ports.json and reused on restart when still free, so a restarted
// cluster keeps its server URL (and etcd its peer URL); a port taken in the
// meantime is replaced by a fresh one.
type ports struct {
	EtcdClient int `json:"etcd_client"`
	EtcdPeer   int `json:"etcd_peer"`
	APIServer  int `json:"apiserver"`
}

// heldPorts are the chosen ports, still bound by this process. A port is
// never released between choosing it and its component binding it:
// kube-apiserver is handed its listener; etcd (whose embed package only binds
// URLs itself) gets its two ports released immediately before it binds them,
// and startEtcdOnHeldPorts retries with fresh ports if anything took one in
// that instant.
type heldPorts struct {
	etcdClient, etcdPeer, apiServer net.Listener
}

// releaseEtcd closes the etcd listeners (idempotent).
func (h *heldPorts) releaseEtcd() {
	for _, l := range []*net.Listener{&h.etcdClient, &h.etcdPeer} {
		if *l != nil {
			(*l).Close()
			*l = nil
		}
	}
}

// close releases everything still held (after a failed start-up).
func (h *heldPorts) close() {
	h.releaseEtcd()
	if h.apiServer != nil {
		h.apiServer.Close()
		h.apiServer = nil
	}
}

// choosePorts binds the ports of DIR/ports.json that are still free and fresh
// ones for the rest, and keeps them all bound (which also stops one run from
// picking the same free port twice). The caller owns the listeners.
func choosePorts(cfg *config) (ports, *heldPorts, error) {
	path := filepath.Join(cfg.dataDir, "ports.json")
	var ps ports
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &ps) // a bad file just means fresh ports
	}
	h := &heldPorts{}
	for _, slot := range []struct {
		port *int
		l    *net.Listener
	}{{&ps.EtcdClient, &h.etcdClient}, {&ps.EtcdPeer, &h.etcdPeer}, {&ps.APIServer, &h.apiServer}} {
		l, err := listenPreferring(cfg, *slot.port)
		if err != nil {
			h.close()
			return ps, nil, err
		}
		*slot.l = l
		*slot.port = l.Addr().(*net.TCPAddr).Port
	}
	return ps, h, nil
}

// listenPreferring binds port when it is set and free, else a fresh port.
func listenPreferring(cfg *config, port int) (net.Listener, error) {
	if port != 0 {
		if l, err := net.Listen("tcp", hostPort(cfg.bind, port)); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", hostPort(cfg.bind, 0))
}

// freshEtcdPorts replaces etcd's two ports with new ones, held like the rest.
func freshEtcdPorts(cfg *config, ps *ports, h *heldPorts) error {
	h.releaseEtcd()
	for _, slot := range []struct {
		port *int
		l    *net.Listener
	}{{&ps.EtcdClient, &h.etcdClient}, {&ps.EtcdPeer, &h.etcdPeer}} {
		l, err := net.Listen("tcp", hostPort(cfg.bind, 0))
		if err != nil {
			return err
		}
		*slot.l = l
		*slot.port = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}

// savePorts records the ports in use, for reuse on the next start.
func savePorts(cfg *config, ps ports) error {
	return writeJSONAtomic(filepath.Join(cfg.dataDir, "ports.json"), ps)
}

// lockDataDir takes an exclusive, non-blocking lock on DIR/lock for the life
// of the process; the kernel drops it when the process dies.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another ys1000-controlplane (pid %s): %w",
			dir, strings.TrimSpace(string(owner)), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// adminRESTConfig is the in-process client used for readiness checks; it
// authenticates like the kubeconfig written for callers.
func adminRESTConfig(server string, p *pki) *rest.Config {
	return &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   p.caCert,
			CertFile: p.adminCert,
			KeyFile:  p.adminKey,
		},
		UserAgent: "ys1000-controlplane",
	}
}

func readyzCheck(rc *rest.Config) func(context.Context) error {
	cs, err := kubernetes.NewForConfig(rc)
	return func(ctx context.Context) error {
		if err != nil {
			return err
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("/readyz: %q", body)
		}
		return nil
	}
}

func defaultSACheck(rc *rest.Config) func(context.Context) error {
	cs, err := kubernetes.NewForConfig(rc)
	return func(ctx context.Context) error {
		if err != nil {
			return err
		}
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}
}

// writeKubeconfig writes the admin kubeconfig with all credentials inline,
// so it stays usable if it is copied elsewhere.
func writeKubeconfig(cfg *config, server string, p *pki) error {
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			panic(err) // ensure() just wrote or checked these files
		}
		return b
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[cfg.name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: read(p.caCert)}
	kc.AuthInfos[cfg.name] = &clientcmdapi.AuthInfo{ClientCertificateData: read(p.adminCert), ClientKeyData: read(p.adminKey)}
	kc.Contexts[cfg.name] = &clientcmdapi.Context{Cluster: cfg.name, AuthInfo: cfg.name}
	kc.CurrentContext = cfg.name
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.kubeconfig), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(cfg.kubeconfig, b, 0o600)
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

// writeFileAtomic writes via a temporary file in the same directory and a
// rename, so readers see either nothing or the whole file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
