package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// BenchmarkEncodeSnapshot: a node's snapshot object of a 1M-truck fleet
// (what PublishSnapshot puts in the object store each period), and
// decoding it with every check a restore makes.
func BenchmarkEncodeSnapshot(b *testing.B) {
	const trucks = 1_000_000
	eng, err := engine.Open(engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	ts := uint32(time.Now().Unix())
	batch := make([]store.Update, 0, 10000)
	for i := range trucks {
		var u store.Update
		u.ID = fmt.Appendf(nil, "truck-%07d", i)
		u.Lat, u.Lon, u.TS, u.Speed = int32(400000000+i*7), int32(-740000000+i*13), ts, uint16(i%1200)
		batch = append(batch, u)
		if len(batch) == cap(batch) {
			if _, err := eng.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	n := &Node{opts: Options{Engine: eng}, parts: make([]*partition, DefaultPartitions), created: 1}
	seqs := make([]uint64, DefaultPartitions)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			obj, count := n.encodeSnapshot(seqs)
			if count != trucks {
				b.Fatalf("%d trucks", count)
			}
			size = len(obj)
		}
		b.ReportMetric(float64(size)/trucks, "bytes/truck")
		b.ReportMetric(float64(trucks)*float64(b.N)/b.Elapsed().Seconds(), "trucks/s")
	})
	obj, _ := n.encodeSnapshot(seqs)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			count := 0
			_, _, err := decodeSnapshot(obj, func(p int, msg []byte) error {
				return DecodeMessage(msg, p, DefaultPartitions, func(*wal.Entry) { count++ })
			})
			if err != nil || count != trucks {
				b.Fatalf("%v, %d trucks", err, count)
			}
		}
		b.ReportMetric(float64(trucks)*float64(b.N)/b.Elapsed().Seconds(), "trucks/s")
	})
}
