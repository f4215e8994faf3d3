package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRunSmall(t *testing.T) {
	rep, err := Run(Options{Trucks: 20_000, Duration: 100 * time.Millisecond, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.EngineStats.Trucks != 20_000 {
		t.Fatalf("engine holds %d trucks", rep.EngineStats.Trucks)
	}
	for name, l := range map[string]Layout{"naive": rep.Naive, "engine": rep.Engine} {
		if l.BytesPerTruck <= 0 || l.UpdatesPerSec1 <= 0 || l.UpdatesPerSecN <= 0 || l.GCCycleMs <= 0 {
			t.Errorf("%s: implausible figures %+v", name, l)
		}
	}
	// The point of the engine: far fewer heap objects than trucks.
	if rep.Engine.HeapObjects > 1000 || rep.Naive.HeapObjects < 20_000 {
		t.Errorf("heap objects: engine %d, naive %d", rep.Engine.HeapObjects, rep.Naive.HeapObjects)
	}
	var buf bytes.Buffer
	rep.Print(&buf)
	for _, want := range []string{"memory per truck", "heap objects", "updates/s, 1 core", "spatial index"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
