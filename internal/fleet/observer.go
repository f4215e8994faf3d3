package fleet

// Batch is what an Observer sees of one applied batch.
type Batch struct {
	Updates []Update
	// Changed[i] says whether Updates[i] changed the store: it was not
	// stale, invalid or refused. For those, HadPrev[i] says whether the
	// truck existed before and Prev[i] is where it was.
	Changed []bool
	HadPrev []bool
	Prev    []Position
}

// Removal says why a truck left the store.
type Removal uint8

const (
	Deleted Removal = iota // DELETE by a client
	Expired                // not heard from for the TTL
)

// Observer sees every change after it is durable and applied, outside the
// store's locks: the live feed and the alert rules are observers.
// Applied and Removed are called from many goroutines at once; a Batch and
// an id are valid only during the call.
type Observer interface {
	Applied(b *Batch)
	Removed(id []byte, p Position, why Removal)
}
