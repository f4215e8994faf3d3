package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The sink ingest benchmarks run BenchmarkServeIngest's load against two
// servers with the same 100 rules plus "seen" (speed >= 0: fires once
// for each truck, so the first lap over the 1M-truck fleet makes 1M
// events): one without sinks and one whose webhook sink's receiver is
// dead (connection refused), so that its outbox holds the 1M events
// while the timed laps run. Compare updates/s and server RSS:
//
//	go test -run XXX -bench 'ServeIngestSink(None|Dead)$' -benchtime 200x -count 5 ./e2e/
//
// BenchmarkServeIngestSinkRules and ...SinkRulesNone measure what the
// sinks cost while events flow: BenchmarkServeIngestRules's 100 rules
// (no "seen"), whose transitions on the simulated fleet are emitted
// during the timed laps, with and without a dead webhook sink (each
// batch that emits waits for the outbox's fsync before it is answered:
// package sink, Sync). They report sink_events/update:
//
//	go test -run XXX -bench 'ServeIngestSinkRules' -benchtime 200x -count 3 ./e2e/
var (
	sinkBenchOnce      [4]sync.Once
	sinkBenchSrv       [4]*benchServer
	sinkBenchErr       [4]error
	sinkBenchPrefilled [4]bool
)

func BenchmarkServeIngestSinkNone(b *testing.B)      { sinkIngestBench(b, 0) }
func BenchmarkServeIngestSinkDead(b *testing.B)      { sinkIngestBench(b, 1) }
func BenchmarkServeIngestSinkRulesNone(b *testing.B) { sinkIngestBench(b, 2) }
func BenchmarkServeIngestSinkRules(b *testing.B)     { sinkIngestBench(b, 3) }

func sinkIngestBench(b *testing.B, which int) {
	// The other servers would compete for the cores (history merges):
	// one runs at a time.
	for i, o := range sinkBenchSrv {
		if o != nil && i != which {
			o.stop()
			sinkBenchSrv[i] = nil
		}
	}
	withSink := which%2 == 1
	sinkBenchOnce[which].Do(func() {
		s, err := startBenchServer()
		if err == nil {
			err = putBenchRules(s)
		}
		if err == nil && which < 2 {
			err = benchPut(s, "/v1/rules/seen", `{"when":"speed >= 0"}`, 200)
		}
		if err == nil && withSink {
			ln, lerr := net.Listen("tcp", "127.0.0.1:0") // a port nobody listens on
			if lerr != nil {
				err = lerr
			} else {
				dead := ln.Addr().String()
				ln.Close()
				err = benchPut(s, "/v1/sinks/dead", fmt.Sprintf(`{"type":"webhook","url":"http://%s/hook","timeout":"1s"}`, dead), 201)
			}
		}
		sinkBenchSrv[which], sinkBenchErr[which] = s, err
	})
	if sinkBenchErr[which] != nil {
		b.Fatal(sinkBenchErr[which])
	}
	s := sinkBenchSrv[which]
	if !sinkBenchPrefilled[which] {
		// The first lap, untimed: 1M "seen" events.
		sinkBenchPrefilled[which] = true
		b.StopTimer()
		for _, body := range s.render(benchFleet / benchBatch) {
			res, err := http.Post("http://"+s.addr+"/v1/positions", "application/x-ndjson", strings.NewReader(string(body)))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("prefill: %d", res.StatusCode)
			}
		}
		if which == 1 {
			deadline := time.Now().Add(2 * time.Minute)
			for {
				st := sinkStats(b, s)
				if st.Depth+st.Shed >= benchFleet || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		b.StartTimer()
	}
	var st0 sinkBenchStats
	if withSink {
		st0 = sinkStats(b, s)
	}
	ingestBench(b, s)
	if withSink {
		st := sinkStats(b, s)
		b.ReportMetric(float64(st.Depth+st.Shed-st0.Depth-st0.Shed)/(float64(b.N)*benchBatch), "sink_events/update")
		b.ReportMetric(float64(st.Depth), "sink_pending")
		b.ReportMetric(float64(st.Shed), "sink_shed")
		b.ReportMetric(float64(st.DiskBytes)/(1<<20), "sink_outbox_MiB")
	}
}

type sinkBenchStats struct {
	Depth     int64 `json:"outbox_depth"`
	Shed      int64 `json:"shed"`
	DiskBytes int64 `json:"outbox_bytes"`
}

func sinkStats(b *testing.B, s *benchServer) sinkBenchStats {
	res, err := http.Get("http://" + s.addr + "/v1/sinks/dead")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var v struct{ Stats sinkBenchStats }
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		b.Fatal(err)
	}
	return v.Stats
}

func benchPut(s *benchServer, path, body string, code int) error {
	req, _ := http.NewRequest("PUT", "http://"+s.addr+path, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != code {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("PUT %s: %d %s", path, res.StatusCode, msg)
	}
	return nil
}
