package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchRule is the i-th rule of the configuration benchmarks: distinct
// sources of the shapes dispatchers write, a fifth of them guarded by one
// of the zones (if any).
func benchRule(i, zones int) RuleSpec {
	switch {
	case zones > 0 && i%5 == 0:
		return RuleSpec{When: fmt.Sprintf(`inside("zone-%05d") && speed > %d`, i%zones, 5+i%50), For: 30 * time.Second}
	case i%3 == 0:
		return RuleSpec{When: fmt.Sprintf("speed > %d && dt < %d", 60+i%100, 30+i%90), Severity: "critical"}
	}
	return RuleSpec{When: fmt.Sprintf("(hour() >= %d || hour() < 4) && speed > %d", 18+i%6, 10+i%40), Severity: "info"}
}

// benchZones puts n small zones spread over North America into e.
func benchZones(b *testing.B, e *Evaluator, n int) { benchZoneRange(b, e, 0, n) }

// benchZoneRange puts benchZones' zones from..to-1 into e.
func benchZoneRange(b *testing.B, e *Evaluator, from, to int) {
	for i := from; i < to; i++ {
		lat, lon := 25+float64(i%200)*0.12, -125+float64(i/200)*1.1
		if _, err := e.PutZone(fmt.Sprintf("zone-%05d", i), strings.NewReader(rect(lat, lon, lat+0.05, lon+0.05))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutRuleOneByOne defines 10,000 rules one PutRule at a time on
// a real disk (every change fsynced): one op is the whole 10,000.
func BenchmarkPutRuleOneByOne(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		e, err := New(Options{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for i := range 10_000 {
			if _, err := e.PutRule(fmt.Sprintf("rule-%06d", i), benchRule(i, 0)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/10k-rules")
		b.StopTimer()
		_ = e.Close()
		b.StartTimer()
	}
}

// BenchmarkPutZoneOneByOne defines 10,000 zones one PutZone at a time on
// a real disk (every change fsynced): one op is the whole 10,000. It
// reports the time of the last 1,000 over the first 1,000: about 1 when a
// zone PUT costs O(change), growing with the zones when it is O(zones).
func BenchmarkPutZoneOneByOne(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		e, err := New(Options{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var first, last time.Duration
		for k := range 10 {
			t0 := time.Now()
			benchZoneRange(b, e, k*1000, (k+1)*1000)
			switch k {
			case 0:
				first = time.Since(t0)
			case 9:
				last = time.Since(t0)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/10k-zones")
		b.ReportMetric(last.Seconds()/first.Seconds(), "last/first-1k")
		b.StopTimer()
		_ = e.Close()
		b.StartTimer()
	}
}

// BenchmarkPutRulesBulk defines 100,000 rules in one PutRules (a bulk PUT)
// on a real disk, over 1,000 zones.
func BenchmarkPutRulesBulk(b *testing.B) {
	b.ReportAllocs()
	rs := make([]NamedRule, 100_000)
	for i := range rs {
		rs[i] = NamedRule{Name: fmt.Sprintf("rule-%06d", i), RuleSpec: benchRule(i, 1000)}
	}
	for range b.N {
		b.StopTimer()
		e, err := New(Options{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		benchZones(b, e, 1000)
		b.StartTimer()
		start := time.Now()
		if _, _, err := e.PutRules(rs); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/100k-rules")
		b.StopTimer()
		_ = e.Close()
		b.StartTimer()
	}
}

// BenchmarkLoadConfig is a restart: New on a change log of 100,000 rules
// and 10,000 zones (as a bulk PUT and 10,000 zone PUTs left it, so not
// compacted), ready to evaluate when it returns.
func BenchmarkLoadConfig(b *testing.B) {
	b.ReportAllocs()
	dir := b.TempDir()
	e, err := New(Options{Dir: dir, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	benchZones(b, e, 10_000)
	rs := make([]NamedRule, 100_000)
	for i := range rs {
		rs[i] = NamedRule{Name: fmt.Sprintf("rule-%06d", i), RuleSpec: benchRule(i, 10_000)}
	}
	if _, _, err := e.PutRules(rs); err != nil {
		b.Fatal(err)
	}
	_ = e.Close()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		e2, err := New(Options{Dir: dir, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/restart")
		if st := e2.Stats(); st.Rules != 100_000 || st.Zones != 10_000 {
			b.Fatalf("loaded %+v", st)
		}
		_ = e2.Close()
	}
}
