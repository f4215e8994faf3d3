package resp

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
)

// benchConn is a conn over an in-memory engine whose commands run by
// exec directly: the RESP layer's own cost, no sockets.
func benchConn(b *testing.B, trucks int) *conn {
	eng, err := engine.Open(engine.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	s, err := New(Options{Engine: eng, Logger: quiet, Now: func() time.Time { return fixedNow }})
	if err != nil {
		b.Fatal(err)
	}
	a, p := net.Pipe()
	b.Cleanup(func() { a.Close(); p.Close() })
	c := newConn(s, a)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range trucks {
		args := fields(fmt.Sprintf("SET fleet truck-%07d POINT %.6f %.6f 1764000000", i, 25+rng.Float64()*24, -124+rng.Float64()*57))
		c.exec(args)
		if i%1000 == 999 {
			c.applyPending()
			c.out = c.out[:0]
		}
	}
	c.applyPending()
	c.out = c.out[:0]
	return c
}

func fields(s string) [][]byte {
	var out [][]byte
	for _, f := range splitSpaces(s) {
		out = append(out, []byte(f))
	}
	return out
}

func splitSpaces(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ' ' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// BenchmarkSetPipeline parses and applies pipelined SETs of a
// 100,000-truck fleet in batches of 1,000 (one engine batch each, as one
// read would make), answering +OK: one op is one SET.
func BenchmarkSetPipeline(b *testing.B) {
	const fleet = 100_000
	c := benchConn(b, 0)
	rng := rand.New(rand.NewPCG(2, 2))
	var wire []byte
	for i := range fleet {
		lat := strconv.FormatFloat(25+rng.Float64()*24, 'f', 6, 64)
		lon := strconv.FormatFloat(-124+rng.Float64()*57, 'f', 6, 64)
		wire = append(wire, encode("SET", "fleet", fmt.Sprintf("truck-%07d", i), "POINT", lat, lon, "1764000000")...)
	}
	var args [][]byte
	off := 0
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if off == len(wire) {
			off = 0
		}
		var used int
		var err error
		args, used, err = Parse(wire[off:], args)
		if err != nil || used == 0 {
			b.Fatal(err)
		}
		off += used
		c.exec(args)
		if n++; n%1000 == 0 {
			c.applyPending()
			c.out = c.out[:0]
		}
	}
	c.applyPending()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkNearbyCommand runs NEARBY fleet LIMIT 10 POINT … (the reply
// encoded, no socket) over a 100,000-truck fleet.
func BenchmarkNearbyCommand(b *testing.B) {
	c := benchConn(b, 100_000)
	cmds := make([][][]byte, 64)
	for i := range cmds {
		cmds[i] = fields(fmt.Sprintf("NEARBY fleet LIMIT 10 POINT %v %v", 30+float64(i%16), -120+float64(i)*0.8))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.exec(cmds[i%len(cmds)])
		c.out = c.out[:0]
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkWithinCommand runs WITHIN fleet CIRCLE … 5000.
func BenchmarkWithinCommand(b *testing.B) {
	c := benchConn(b, 100_000)
	cmds := make([][][]byte, 64)
	for i := range cmds {
		cmds[i] = fields(fmt.Sprintf("WITHIN fleet CIRCLE %v %v 5000", 30+float64(i%16), -120+float64(i)*0.8))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.exec(cmds[i%len(cmds)])
		c.out = c.out[:0]
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
