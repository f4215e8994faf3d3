package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ConfigHandler puts the bucket in front of next's configuration
// writes (PUT and DELETE of /v1/zones/{name}, /v1/rules/{name},
// /v1/sinks/{name}, and PUT /v1/rules): next applies the request to this
// node as a single node would (authentication, validation, limits, its
// answer), and a 2xx answer is held until the change is in the bucket;
// then it is sent with ConfigRevisionHeader. A request carrying that
// header first waits (bounded) until this node has applied the
// revision. Without a ConfigTarget in Options, next itself.
func (n *Node) ConfigHandler(next http.Handler) http.Handler {
	c := n.cfg
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(ConfigRevisionHeader); v != "" {
			rev, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("cluster: %s %q is not a revision (a decimal number)", ConfigRevisionHeader, clipString(v)))
				return
			}
			if err := c.await(r.Context(), rev); err != nil {
				w.Header().Set("Retry-After", "1")
				writeErr(w, http.StatusServiceUnavailable, err.Error()+"; retry, or read on another node")
				return
			}
		}
		kind, name, bulk, ok := configRequest(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBody+1))
		if err != nil {
			writeErr(w, http.StatusBadRequest, "cluster: reading the body: "+err.Error())
			return
		}
		if len(body) > maxConfigBody {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("cluster: a configuration body is at most %d bytes", maxConfigBody))
			return
		}
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		rec := &recorder{h: http.Header{}}
		c.mu.Lock()
		next.ServeHTTP(rec, r2)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		if rec.code/100 != 2 {
			c.mu.Unlock()
			rec.flush(w)
			return
		}
		var cs []Change
		switch {
		case bulk:
			cs, err = c.target.Split(body)
		case r.Method == http.MethodDelete:
			cs = []Change{{Kind: kind, Name: name, Delete: true}}
		default:
			cs = []Change{{Kind: kind, Name: name, Value: body}}
		}
		var rev uint64
		if err == nil && len(cs) > 0 {
			rev, err = c.writeLocked(r.Context(), cs)
		}
		c.mu.Unlock()
		if err != nil {
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, err.Error()+"; nothing was changed, retry")
			return
		}
		c.advance(rev)
		rec.h.Set(ConfigRevisionHeader, strconv.FormatUint(rev, 10))
		rec.flush(w)
	})
}

// configRequest classifies a configuration write.
func configRequest(r *http.Request) (k Kind, name string, bulk, ok bool) {
	if r.Method != http.MethodPut && r.Method != http.MethodDelete {
		return "", "", false, false
	}
	p := r.URL.Path
	if p == "/v1/rules" && r.Method == http.MethodPut {
		return KindRule, "", true, true
	}
	for _, pk := range [...]struct {
		prefix string
		k      Kind
	}{{"/v1/zones/", KindZone}, {"/v1/rules/", KindRule}, {"/v1/sinks/", KindSink}} {
		if rest, found := strings.CutPrefix(p, pk.prefix); found && rest != "" && !strings.Contains(rest, "/") {
			return pk.k, rest, false, true
		}
	}
	return "", "", false, false
}

// recorder holds an answer until the bucket has the change.
type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) flush(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range r.h {
		h[k] = v
	}
	w.WriteHeader(r.code)
	_, _ = w.Write(r.body.Bytes())
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	b, err := json.Marshal(map[string]string{"error": msg})
	if err != nil {
		panic(errors.New("BUG: cluster: marshalling an error"))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
