package ingest

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchBody returns n realistic NDJSON lines: trucks over the continental
// US with GPS-like precision (6 decimals ≈ 0.1 m), as AppendNDJSON writes them.
func benchBody(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	var dst []byte
	id := make([]byte, 0, 16)
	for i := 0; i < n; i++ {
		id = append(id[:0], "truck-"...)
		k := r.IntN(1_000_000)
		for div := 1_000_000; div > 1; div /= 10 {
			id = append(id, byte('0'+k/(div/10)%10))
		}
		u := Update{
			ID:      id,
			Lat:     round(24.5+r.Float64()*(49.4-24.5), 1e6),
			Lon:     round(-124.8+r.Float64()*(124.8-66.9), 1e6),
			TS:      1764000000 + int64(i/100),
			Speed:   round(r.Float64()*130, 10),
			Heading: float64(r.IntN(360)),
		}
		dst = AppendNDJSON(dst, &u)
	}
	return dst
}

func round(x, scale float64) float64 {
	return float64(int64(x*scale+0.5)) / scale // x ≥ 0 or near enough for test data
}

// ndjsonToArray wraps NDJSON lines as a JSON array.
func ndjsonToArray(body []byte) []byte {
	lines := bytes.Split(bytes.TrimRight(body, "\n"), []byte("\n"))
	out := []byte("[")
	out = append(out, bytes.Join(lines, []byte(",\n"))...)
	return append(out, "]"...)
}

// benchDecode reports the count decode returns per second as units/s.
func benchDecode(b *testing.B, body []byte, unit string, decode func(*Decoder, []byte) int) {
	var d Decoder
	n := decode(&d, body) // warm up: size the decoder's buffers
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if decode(&d, body) != n {
			b.Fatal("decoded count changed")
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), unit+"s/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/float64(b.N), "ns/"+unit)
}

func BenchmarkDecodeNDJSON(b *testing.B) {
	body := benchBody(10_000, 1)
	benchDecode(b, body, "update", func(d *Decoder, body []byte) int {
		ups, rep := d.DecodeNDJSON(body, testNow)
		if rep.Rejected != 0 {
			b.Fatal(rep.Errors)
		}
		return len(ups)
	})
}

func BenchmarkDecodeArray(b *testing.B) {
	body := ndjsonToArray(benchBody(10_000, 1))
	benchDecode(b, body, "update", func(d *Decoder, body []byte) int {
		ups, rep := d.DecodeArray(body, testNow)
		if rep.Rejected != 0 {
			b.Fatal(rep.Errors)
		}
		return len(ups)
	})
}

// BenchmarkDecodeNDJSONParallel measures throughput with one Decoder per
// goroutine, as the HTTP handler uses them (run with -cpu 1,2,...).
func BenchmarkDecodeNDJSONParallel(b *testing.B) {
	body := benchBody(10_000, 1)
	// One warmed-up Decoder per goroutine, so that allocs/op shows the
	// steady state rather than the first call's buffer growth.
	decoders := make([]Decoder, runtime.GOMAXPROCS(0))
	for i := range decoders {
		decoders[i].DecodeNDJSON(body, testNow)
	}
	var next atomic.Int32
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := new(Decoder)
		if i := int(next.Add(1) - 1); i < len(decoders) {
			d = &decoders[i]
		}
		for pb.Next() {
			if ups, _ := d.DecodeNDJSON(body, testNow); len(ups) != 10_000 {
				b.Error("short decode")
				return
			}
		}
	})
	b.ReportMetric(10_000*float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkDecodeNDJSONRejected measures a body of invalid lines: after the
// first MaxErrors, rejections must cost no allocation.
func BenchmarkDecodeNDJSONRejected(b *testing.B) {
	body := bytes.ReplaceAll(benchBody(10_000, 1), []byte(`"lat":`), []byte(`"lat":1`))
	benchDecode(b, body, "line", func(d *Decoder, body []byte) int {
		_, rep := d.DecodeNDJSON(body, testNow)
		return rep.Rejected
	})
}

func BenchmarkAppendNDJSON(b *testing.B) {
	u := Update{ID: []byte("truck-0000042"), Lat: 40.712776, Lon: -74.005974, TS: 1764000000, Speed: 52.5, Heading: 90}
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendNDJSON(dst[:0], &u)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}
