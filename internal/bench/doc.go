// Package bench measures, in-process, the lessons fleetd is built on: what
// a truck costs in memory in the naive layout (one heap object per truck in
// a map) versus the engine's pointer-free slabs, how many heap objects each
// leaves for the garbage collector, how long a collection takes with each
// alive, and how ingest scales from one core to all of them. `fleetd bench`
// prints its Report.
//
// Every figure is measured on the machine it runs on; nothing is estimated.
// Memory figures are heap growth after two forced collections, over an
// empty baseline. Throughput figures are timed loops of 10,000-update
// batches that move every truck, for a fixed duration.
package bench
