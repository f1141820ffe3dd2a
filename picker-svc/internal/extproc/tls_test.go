package extproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// A gateway that dials the picker over TLS and accepts any certificate (as
// Envoy AI Gateway and kgateway do) completes an exchange.
func TestSelfSignedServes(t *testing.T) {
	cfg, err := ServerTLS(TLSSelfSigned, "")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	dec := &fakeDecider{next: picked}
	extprocv3.RegisterExternalProcessorServer(gs, New(dec, Config{}, nil))
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(requestHeaders(true, nil, nil)))
	r, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:8000,10.0.0.2:8000", destination(t, r))
}

func writePair(t *testing.T, dir string, at time.Time) []byte {
	t.Helper()
	c, err := SelfSigned(time.Now())
	require.NoError(t, err)
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	require.NoError(t, err)
	crt := filepath.Join(dir, "tls.crt")
	require.NoError(t, os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
	require.NoError(t, os.Chtimes(crt, at, at))
	return c.Certificate[0]
}

// Files from a Secret: served, and served anew once rotated.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	first := writePair(t, dir, time.Unix(1_700_000_000, 0))
	cfg, err := ServerTLS(TLSFiles, dir)
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	served := func() []byte {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	require.True(t, bytes.Equal(first, served()))
	second := writePair(t, dir, time.Unix(1_700_000_100, 0))
	require.True(t, bytes.Equal(second, served()), "the rotated pair is served")
	require.NoError(t, os.Remove(filepath.Join(dir, "tls.key")))
	require.True(t, bytes.Equal(second, served()), "mid-rotation the last pair stays")
}

func TestServerTLSErrors(t *testing.T) {
	_, err := ServerTLS("mtls", "")
	require.ErrorContains(t, err, `"mtls"`)
	_, err = ServerTLS(TLSFiles, t.TempDir())
	require.ErrorContains(t, err, "tls.crt")
	cfg, err := ServerTLS(TLSOff, "")
	require.NoError(t, err)
	require.Nil(t, cfg)
}
