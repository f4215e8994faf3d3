package resp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/vfs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixedNow is the clock of the tests' servers: 2025-11-24T16:00:00Z.
var fixedNow = time.Unix(1764000000, 0)

// fixture is a Server on a loopback port over a fresh engine.
type fixture struct {
	t   testing.TB
	eng *engine.Engine
	s   *Server
	ln  net.Listener
}

type fixtureOpts struct {
	keys     *auth.Keyring
	fs       vfs.FS // with it, a durable engine in /data
	maxConns int
}

func newFixture(t testing.TB, fo fixtureOpts) *fixture {
	t.Helper()
	eo := engine.Options{Logger: quiet}
	if fo.fs != nil {
		eo.DataDir, eo.FS = "/data", fo.fs
	}
	eng, err := engine.Open(eo)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Engine: eng, Keyring: fo.keys, MaxConns: fo.maxConns, Logger: quiet, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Error(err)
		}
	})
	return &fixture{t: t, eng: eng, s: s, ln: ln}
}

// client is a raw RESP connection.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func (f *fixture) dial() *client {
	f.t.Helper()
	nc, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: f.t, nc: nc, br: bufio.NewReader(nc)}
}

// encode renders a command as a RESP array of bulk strings.
func encode(args ...string) []byte {
	b := AppendArray(nil, len(args))
	for _, a := range args {
		b = AppendBulkString(b, a)
	}
	return b
}

// send writes raw bytes.
func (c *client) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// do sends a command (split on spaces) and reads its reply.
func (c *client) do(cmd string) any {
	c.t.Helper()
	c.send(encode(strings.Fields(cmd)...))
	return c.read()
}

// respErr is an error reply.
type respErr string

// read reads one reply: string (simple), respErr, int64, []byte (bulk),
// nil (null), []any (array).
func (c *client) read() any {
	c.t.Helper()
	v, err := readReply(c.br)
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return v
}

func readReply(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return respErr(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(b, []byte("\r\n")) {
			return nil, fmt.Errorf("bulk not ended by CRLF")
		}
		return b[:n], nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(br); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("bad reply type %q", line)
}

// show renders a reply compactly for comparisons: OK, (err …), 5, "bulk",
// nil, [a b].
func show(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case respErr:
		return "(err " + string(v) + ")"
	case int64:
		return strconv.FormatInt(v, 10)
	case []byte:
		return strconv.Quote(string(v))
	case nil:
		return "nil"
	case []any:
		parts := make([]string, len(v))
		for i := range v {
			parts[i] = show(v[i])
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("?%T", v)
}
