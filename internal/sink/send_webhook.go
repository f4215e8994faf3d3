package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/fleetd/fleetd/internal/outbox"
)

// Webhook request headers (doc.go, Webhook).
const (
	HeaderEventID   = "X-Fleetd-Event-Id"
	HeaderEventKind = "X-Fleetd-Event-Kind"
	HeaderSeq       = "X-Fleetd-Seq"
	HeaderSignature = "X-Fleetd-Signature"
)

// webhook posts each event as one JSON request.
type webhook struct {
	url     string
	secret  []byte
	timeout time.Duration
	client  *http.Client
}

func newWebhook(c Config) *webhook {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: time.Duration(c.Timeout), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   lanes, // one request in flight a lane
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   time.Duration(c.Timeout),
		ResponseHeaderTimeout: time.Duration(c.Timeout),
	}
	return &webhook{url: c.URL, secret: []byte(c.Secret), timeout: time.Duration(c.Timeout),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Sign is the X-Fleetd-Signature value of body under secret:
// "sha256=" and the hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w *webhook) send(ctx context.Context, recs []outbox.Record) (int, error) {
	for i := range recs {
		if err := w.post(ctx, &recs[i]); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

func (w *webhook) post(ctx context.Context, r *outbox.Record) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(r.Payload))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	id, kind := eventHeader(r.Payload)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "fleetd-sink")
	h.Set(HeaderEventID, id)
	h.Set(HeaderEventKind, kind)
	h.Set(HeaderSeq, strconv.FormatUint(r.Seq, 10))
	if len(w.secret) > 0 {
		h.Set(HeaderSignature, Sign(w.secret, r.Payload))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: %s answered %s", w.url, resp.Status)
	}
	return nil
}

func (w *webhook) close() { w.client.CloseIdleConnections() }
