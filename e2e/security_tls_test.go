package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecurityTLS serves HTTPS with a self-signed pair: HTTP/2 and
// HTTP/1.1, a Secure session cookie, and a SIGHUP that swaps the pair.
func TestSecurityTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := x509.NewCertPool()
	writePair(t, certFile, keyFile, "fleetd-e2e-1", pool)
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "wall-91c2 read wall\n")
	p := start(t, "--tls-cert", certFile, "--tls-key", keyFile, "--token-file", tokens)

	var seen *x509.Certificate
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool, VerifyConnection: func(cs tls.ConnectionState) error {
		seen = cs.PeerCertificates[0]
		return nil
	}}}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(proto string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+p.addr+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer wall-91c2")
		c := cl
		if proto == "http/1.1" {
			c = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}}}
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", proto, res.StatusCode)
		}
		return res
	}
	if res := get("h2"); res.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", res.Proto)
	}
	if res := get("http/1.1"); res.ProtoMajor != 1 {
		t.Fatalf("proto %s, want HTTP/1.1", res.Proto)
	}
	if seen.Subject.CommonName != "fleetd-e2e-1" {
		t.Fatalf("cert %q", seen.Subject.CommonName)
	}
	// Plain HTTP on the TLS port is not served.
	if res, err := http.Get("http://" + p.addr + "/healthz"); err == nil {
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS port")
		}
		res.Body.Close()
	}
	// Login over TLS: the cookie is Secure.
	req, _ := http.NewRequest("POST", "https://"+p.addr+"/v1/login", strings.NewReader(`{"token":"wall-91c2"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := cl.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("login: %v %v", res, err)
	}
	res.Body.Close()
	if sc := res.Header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") || !strings.Contains(sc, "HttpOnly") {
		t.Fatalf("Set-Cookie %q", sc)
	}

	// SIGHUP swaps the key pair for new connections.
	writePair(t, certFile, keyFile, "fleetd-e2e-2", pool)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog("TLS key pair reloaded")
	tr.CloseIdleConnections()
	get("h2")
	if seen.Subject.CommonName != "fleetd-e2e-2" {
		t.Fatalf("after SIGHUP: cert %q", seen.Subject.CommonName)
	}
}

// writePair writes a self-signed ECDSA pair for 127.0.0.1 and adds it to pool.
func writePair(t *testing.T, certFile, keyFile, cn string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	c, _ := x509.ParseCertificate(der)
	pool.AddCert(c)
}
