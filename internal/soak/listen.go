package soak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// probes measure the delivery delay of positions to subscribers that keep
// reading. A probe is the position of truck "probe-NNNN" (probeIDs of
// them, reused in turn) at a random place in the fleet's area, posted
// alone, probesPerSec a second, beside the load; it reaches the
// subscribers whose boxes hold it. The poster records, per probe ID, the
// ts it sent and the time just before its POST started; a subscriber that
// reads the probe's event takes the difference. The delay thus includes
// the POST (decoding, WAL, apply) as a device posting one position would
// see it, not only the feed's part.
//
// An event whose ts is not the one last sent for its ID comes from an
// earlier use of the ID (a probe cycle, probeIDs / probesPerSec seconds,
// ago) and is counted as unmatched instead.
type probes struct {
	start     time.Time
	warmUp    time.Duration // probes received earlier are not counted
	n         atomic.Uint64 // probes sent
	sentAt    [probeIDs]atomic.Uint64
	delay     histogram
	unmatched atomic.Int64
}

const (
	probeIDs     = 4096 // a cycle of 82 s
	probesPerSec = 50
	probePrefix  = "probe-"
)

// next returns the next probe ID number.
func (p *probes) next() int { return int(p.n.Add(1)-1) % probeIDs }

// sent records that probe k with ts is about to be posted at t.
func (p *probes) sent(k int, ts int64, t time.Time) {
	p.sentAt[k].Store(uint64(uint32(ts))<<32 | uint64(uint32(t.Sub(p.start).Milliseconds())))
}

// received records probe k's event with ts, read at t.
func (p *probes) received(k int, ts uint32, t time.Time) {
	el := t.Sub(p.start)
	if el < p.warmUp {
		return
	}
	v := p.sentAt[k].Load()
	if uint32(v>>32) != ts {
		p.unmatched.Add(1)
		return
	}
	p.delay.add(el - time.Duration(uint32(v))*time.Millisecond)
}

func appendProbeID(dst []byte, k int) []byte {
	return fmt.Appendf(dst, probePrefix+"%04d", k)
}

// probeMark starts a probe's position event (its expired event, when the
// probe truck expires, carries the same ID and ts).
var probeMark = []byte(`{"type":"position","id":"` + probePrefix)

// scan finds the probes in complete event lines read at t.
func (p *probes) scan(lines []byte, t time.Time) {
	for {
		i := bytes.Index(lines, probeMark)
		if i < 0 {
			return
		}
		lines = lines[i+len(probeMark):]
		k, rest, ok := leadingUint(lines)
		if !ok || k >= probeIDs {
			continue
		}
		j := bytes.Index(rest, []byte(`"ts":`))
		if nl := bytes.IndexByte(rest, '\n'); j < 0 || (nl >= 0 && nl < j) {
			continue
		}
		ts, _, ok := leadingUint(rest[j+len(`"ts":`):])
		if ok {
			p.received(int(k), uint32(ts), t)
		}
	}
}

// leadingUint parses the decimal digits that start b.
func leadingUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	return v, b[i:], i > 0
}

// subscribe keeps one subscriber slot busy: it connects with a random
// bbox covering about 1% of the US fleet, reads for a random lifetime and
// reconnects. A stalled subscriber stops reading after its first bytes and
// holds the connection until the server drops it, or vanishes by
// resetting the TCP connection. One that keeps reading reads 32 KiB at a
// time and looks only for probes, as cheap a client as there is: it runs
// in the server's process, on the same cores.
func subscribe(ctx context.Context, o Options, seed uint64, stalled bool, live *atomic.Int64, pr *probes) {
	r := rand.New(rand.NewPCG(seed, 9))
	var buf []byte
	if !stalled {
		buf = make([]byte, 32<<10)
	}
	for ctx.Err() == nil {
		lat, lon := 25+r.Float64()*22, -124+r.Float64()*54
		url := fmt.Sprintf("%s/v1/stream?bbox=%.3f,%.3f,%.3f,%.3f", o.Target, lon, lat, lon+5.7, lat+2.4)
		life := time.Duration(5+r.IntN(20)) * time.Second
		sctx, cancel := context.WithTimeout(ctx, life)
		var conn net.Conn
		tr := &http.Transport{DialContext: func(c context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			cn, err := d.DialContext(c, network, addr)
			conn = cn
			return cn, err
		}}
		req, _ := http.NewRequestWithContext(sctx, "GET", url, nil)
		if o.Token != "" {
			req.Header.Set("Authorization", "Bearer "+o.Token)
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil || res.StatusCode != 200 {
			if res != nil {
				res.Body.Close()
			}
			cancel()
			tr.CloseIdleConnections()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		live.Add(1)
		if stalled {
			bufio.NewReader(res.Body).ReadString('\n') // the first bytes, then nothing
			if r.IntN(2) == 0 {
				<-sctx.Done() // stop reading, hold on
			} else if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // vanish: reset, no orderly close
				tc.Close()
			}
		} else {
			// buf[:keep] is an incomplete line carried to the next read.
			keep := 0
			for {
				n, err := res.Body.Read(buf[keep:])
				t := time.Now()
				end := keep + n
				if nl := bytes.LastIndexByte(buf[keep:end], '\n'); nl >= 0 {
					pr.scan(buf[:keep+nl+1], t)
					keep = copy(buf, buf[keep+nl+1:end])
				} else if keep = end; keep == len(buf) {
					keep = 0 // no event is that long; drop it
				}
				if err != nil {
					break
				}
			}
		}
		live.Add(-1)
		res.Body.Close()
		cancel()
		tr.CloseIdleConnections()
	}
}
