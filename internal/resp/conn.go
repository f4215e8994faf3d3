package resp

import (
	"net"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/store"
)

// conn is one client connection. Its fields belong to its goroutine,
// except what shutdown touches (mu).
type conn struct {
	s  *Server
	nc net.Conn

	in   []byte // read buffer; in[r:w] is unparsed
	r, w int
	args [][]byte
	out  []byte // replies not yet written

	deadline time.Time // the write deadline set on nc (see flush)

	json   bool // OUTPUT json
	quit   bool // close after writing what is buffered
	broken bool // the connection failed: stop

	// Authentication: the token the client presented (kept to look it up
	// again on each read, so that a SIGHUP that removes it ends its
	// access) and what it grants.
	token     string
	scope     auth.Scope
	name      string
	authFails int

	// pending are SETs parsed but not yet applied: they alias in and are
	// applied as one engine batch before anything else is answered.
	pending []store.Update
	started time.Time // when the first pending SET was parsed (JSON elapsed)
	now     int64     // the clock in Unix seconds for this read's SETs (0: not read yet)

	hits  []store.Hit // Nearest's result
	items []byte      // search results encoded before their count is known
	tmp   []byte      // one value (a GeoJSON object) before it becomes a bulk string

	mu     sync.Mutex
	closed bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, in: make([]byte, readInit), args: make([][]byte, 0, 16)}
	if s.keys == nil {
		c.scope = auth.All
	}
	return c
}

// shutdown closes the socket from another goroutine (Server.Close): the
// blocked read returns and serve ends.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		_ = c.nc.Close()
	}
}

func (c *conn) serve() {
	defer c.shutdown()
	for !c.quit && !c.broken {
		if c.w == len(c.in) && !c.grow() {
			c.s.counters.protocolErrors.Add(1)
			c.out = AppendError(c.out, "ERR Protocol error: command longer than the limit")
			c.flush()
			return
		}
		n, err := c.nc.Read(c.in[c.w:])
		full := c.w+n == len(c.in)
		c.w += n
		if n > 0 {
			c.process()
			c.flush()
			switch {
			case full && len(c.in) < readBatch && c.w < len(c.in)/2:
				// Pipelining: read more at a time, for larger engine batches.
				c.in = append(c.in[:len(c.in)], make([]byte, len(c.in))...)
			case len(c.in) > readInit && n < len(c.in)/8 && c.w == 0:
				// The pipeline drained: give the memory back.
				c.in, c.pending = make([]byte, readInit), nil
			}
		}
		if err != nil {
			return
		}
	}
}

// grow makes room for a command longer than the read buffer, up to
// MaxCommand; false past it.
func (c *conn) grow() bool {
	if c.r > 0 {
		c.compact()
		return true
	}
	if len(c.in) >= MaxCommand {
		return false
	}
	c.in = append(c.in, make([]byte, min(len(c.in), MaxCommand-len(c.in)))...)
	return true
}

func (c *conn) compact() {
	n := copy(c.in, c.in[c.r:c.w])
	c.r, c.w = 0, n
	if n == 0 && len(c.in) > readBatch {
		c.in = make([]byte, readBatch) // a long command is gone: drop its buffer
	}
}

// process runs every complete command in the read buffer, SETs batched.
func (c *conn) process() {
	c.refreshAuth()
	c.now = 0
	for c.r < c.w && !c.quit {
		args, n, err := Parse(c.in[c.r:c.w], c.args)
		c.args = args[:0]
		if err != nil {
			c.applyPending()
			c.s.counters.protocolErrors.Add(1)
			c.s.warn("protocol", "resp: closing a connection after a protocol error", "remote", c.nc.RemoteAddr().String(), "error", err)
			c.out = AppendError(c.out, "ERR Protocol error: "+err.Error()[len("resp: protocol error: "):])
			c.quit = true
			break
		}
		if n == 0 {
			break
		}
		c.r += n
		if len(args) == 0 {
			continue
		}
		c.s.counters.commands.Add(1)
		c.exec(args)
		if len(c.out) >= outFlush && len(c.pending) == 0 {
			c.flush()
		}
	}
	c.applyPending()
	c.compact()
}

// flush writes the buffered replies.
func (c *conn) flush() {
	if len(c.out) == 0 || c.broken {
		return
	}
	// The deadline is renewed once it is less than writeTimeout away, not
	// at every write: each write still gets writeTimeout (at most
	// writeSlack more), and a request-reply client is spared a timer
	// update per reply (1.1% of a NEARBY's server CPU in the profile of
	// BenchmarkQueryCPU/resp/knn10).
	if now := time.Now(); c.deadline.Sub(now) < writeTimeout {
		c.deadline = now.Add(writeTimeout + writeSlack)
		_ = c.nc.SetWriteDeadline(c.deadline)
	}
	if _, err := c.nc.Write(c.out); err != nil {
		c.broken = true
	}
	if cap(c.out) > outRetain {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
}

// refreshAuth looks the connection's token up again (at most once a read):
// a token removed from the file (and SIGHUP) loses its access at once.
func (c *conn) refreshAuth() {
	if c.s.keys == nil || c.token == "" {
		return
	}
	scope, name, ok := c.s.keys.Lookup(c.token)
	if !ok {
		c.token, c.scope, c.name = "", 0, ""
		return
	}
	c.scope, c.name = scope, name
}
