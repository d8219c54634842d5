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

func choosePorts(cfg *config) (ports, error) {
	path := filepath.Join(cfg.dataDir, "ports.json")
	var ps ports
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &ps) // a bad file just means fresh ports
	}
	// Hold every listener until all are chosen so one run cannot pick the
	// same free port twice.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, port := range []*int{&ps.EtcdClient, &ps.EtcdPeer, &ps.APIServer} {
		l, err := net.Listen("tcp", hostPort(cfg.bind, *port))
		if err != nil || *port == 0 {
			if l != nil {
				l.Close()
			}
			if l, err = net.Listen("tcp", hostPort(cfg.bind, 0)); err != nil {
				return ps, err
			}
		}
		held = append(held, l)
		*port = l.Addr().(*net.TCPAddr).Port
	}
	return ps, writeJSONAtomic(path, ps)
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
