package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// pki holds the paths of every key and certificate the components read. The
// files live in DIR/pki so that a restart reuses them: the CA must stay the
// same for existing kubeconfigs to keep working, and the service-account key
// must stay the same for already issued tokens to stay valid.
type pki struct {
	dir string

	caCert, caKey           string // cluster CA; also signs CSRs in the controller-manager
	servingCert, servingKey string // kube-apiserver TLS
	adminCert, adminKey     string // client cert, CN=admin O=system:masters
	saKey, saPub            string // service-account token signing pair (RSA)
}

func newPKI(dir string) *pki {
	p := func(name string) string { return filepath.Join(dir, name) }
	return &pki{
		dir:         dir,
		caCert:      p("ca.crt"),
		caKey:       p("ca.key"),
		servingCert: p("apiserver.crt"),
		servingKey:  p("apiserver.key"),
		adminCert:   p("admin.crt"),
		adminKey:    p("admin.key"),
		saKey:       p("sa.key"),
		saPub:       p("sa.pub"),
	}
}

// ensure loads what exists and creates what is missing. The serving cert is
// re-issued when it does not cover the current bind address (the --bind flag
// may change between runs) or was signed by another CA.
func (p *pki) ensure(bindIP net.IP, serviceIP net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}

	ca, caKey, err := loadPair(p.caCert, p.caKey)
	if errors.Is(err, os.ErrNotExist) {
		ca, caKey, err = p.createCA()
	}
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}

	ips := []net.IP{net.IPv4(127, 0, 0, 1), bindIP, serviceIP}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local"}
	serving, _, err := loadPair(p.servingCert, p.servingKey)
	if err != nil || !signedBy(serving, ca) || !coversIP(serving, bindIP) {
		if err := issue(ca, caKey, p.servingCert, p.servingKey, pkix.Name{CommonName: "kube-apiserver"},
			x509.ExtKeyUsageServerAuth, ips, dns); err != nil {
			return fmt.Errorf("apiserver serving cert: %w", err)
		}
	}

	admin, _, err := loadPair(p.adminCert, p.adminKey)
	if err != nil || !signedBy(admin, ca) {
		if err := issue(ca, caKey, p.adminCert, p.adminKey,
			pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
			x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
			return fmt.Errorf("admin cert: %w", err)
		}
	}

	if _, err := os.Stat(p.saKey); errors.Is(err, os.ErrNotExist) {
		if err := p.createSAKey(); err != nil {
			return fmt.Errorf("service-account key: %w", err)
		}
	}
	return nil
}

func (p *pki) createCA() (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ys1000-controlplane-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(p.caCert, p.caKey, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// createSAKey writes an RSA pair: RSA is what every client of service-account
// tokens (and kube-apiserver's JWKS endpoint consumers) supports.
func (p *pki) createSAKey() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(p.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
}

// issue creates a leaf key and a certificate for it signed by the CA.
func issue(ca *x509.Certificate, caKey crypto.Signer, certPath, keyPath string, subject pkix.Name,
	usage x509.ExtKeyUsage, ips []net.IP, dns []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, der, key)
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// Key first: a cert on disk without its key would be loaded as "present".
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// loadPair reads a PEM certificate and its EC private key.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s: not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func signedBy(cert, ca *x509.Certificate) bool {
	return cert.CheckSignatureFrom(ca) == nil && time.Now().Before(cert.NotAfter)
}

func coversIP(cert *x509.Certificate, ip net.IP) bool {
	return slices.ContainsFunc(cert.IPAddresses, ip.Equal)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
