package extproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// TLS for the ext_proc listener. Some gateways dial their endpoint picker
// over TLS and accept any certificate (Envoy AI Gateway for Envoy Gateway,
// kgateway), as the upstream picker serves TLS with a self-signed
// certificate by default (its --secure-serving, --cert-path). Istio's
// gateway uses a plain mesh cluster (plaintext unless a DestinationRule
// says otherwise).

// TLSMode says how the ext_proc listener serves.
type TLSMode string

// TLS modes.
const (
	TLSOff        TLSMode = "off"
	TLSSelfSigned TLSMode = "self-signed"
	// TLSFiles: tls.crt and tls.key from a directory (a Kubernetes TLS
	// Secret's keys), re-read when either file changes.
	TLSFiles TLSMode = "files"
)

// ServerTLS returns the listener's TLS configuration (nil for TLSOff).
func ServerTLS(mode TLSMode, certDir string) (*tls.Config, error) {
	switch mode {
	case TLSOff, "":
		return nil, nil
	case TLSSelfSigned:
		cert, err := SelfSigned(time.Now())
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}, nil
	case TLSFiles:
		r := &certReloader{crt: filepath.Join(certDir, "tls.crt"), key: filepath.Join(certDir, "tls.key")}
		if _, err := r.get(nil); err != nil {
			return nil, err
		}
		return &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}, nil
	}
	return nil, fmt.Errorf("ext_proc TLS %q: want off, self-signed or files", mode)
}

// SelfSigned makes an ECDSA P-256 certificate valid for a year from now.
func SelfSigned(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{Organization: []string{"meshllm picker-svc"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// certReloader serves the key pair in two files, loading it again when
// either file's modification time or size changes (a rotated Secret).
type certReloader struct {
	crt, key string

	mu    sync.Mutex
	stamp string
	cert  *tls.Certificate
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	stamp, err := fileStamp(r.crt, r.key)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && stamp == r.stamp && r.cert != nil {
		return r.cert, nil
	}
	if err != nil {
		if r.cert != nil {
			return r.cert, nil // mid-rotation: keep serving the last pair
		}
		return nil, err
	}
	c, err := tls.LoadX509KeyPair(r.crt, r.key)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, fmt.Errorf("ext_proc TLS: %w", err)
	}
	r.cert, r.stamp = &c, stamp
	return r.cert, nil
}

func fileStamp(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}
