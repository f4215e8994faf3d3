package auth

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Certificate is a TLS key pair read from two PEM files, reloadable
// (SIGHUP) without a restart: connections made after a Reload get the new
// pair, open ones keep theirs. A failed Reload keeps the old pair.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads the key pair.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the key pair again.
func (c *Certificate) Reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("auth: TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&kp)
	return nil
}

// Config is a server TLS configuration serving the current pair: the
// standard library's defaults (TLS 1.2 and 1.3, its cipher suites), with
// HTTP/2 and HTTP/1.1 offered by ALPN.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
