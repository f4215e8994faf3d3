// Package alert holds fleetd's zones and alert rules, evaluates the rules
// on every applied GPS update and reports their transitions.
//
// An Evaluator is an fleet.Observer. For every update that changed the
// store it builds a rules.Input (the new position; the previous one when
// the truck had one) and evaluates the rules that can apply. Rules are
// compiled by package rules through a rules.Cache (one Program per
// distinct source); zones are fence.Zones in a fence.Set, which is both
// the rules' ZoneResolver and their ZoneTester.
//
// # Transitions
//
// A rule fires for a truck when its condition has been true on every
// update of the truck for at least For (rounded up to whole seconds, since
// timestamps are seconds), and resolves on the first update where it is
// false:
//
//	condition  state               action
//	true       none                record since = ts; fire now if For == 0
//	true       since, not firing   fire if ts - since >= For
//	true       firing              nothing
//	false      since               forget; resolve if it was firing
//
// so inside("yard-3") gives an enter (firing) and an exit (resolved)
// event. Each transition is an Alert passed to Options.Emit, outside every
// lock, with the truck's position and time at the update that caused it
// and Since, when the condition became true. A truck deleted or expired
// (Removed) loses its state in every rule, and each of its firing alerts
// is resolved with Reason "truck deleted" or "truck expired" at its last
// position: a client that tracks firing alerts from the feed never keeps
// one for a truck that no longer exists. Deleting a rule (or replacing
// it: a new condition starts with no state) frees its state and resolves
// its firing alerts with Reason "rule deleted" or "rule replaced".
// Replacing a zone keeps the rules and their state; the new shape applies
// from the next batch. State is not persisted: after a restart, conditions
// that are still true fire again on the trucks' next updates.
//
// Updates of one truck in two batches applied concurrently (or in two
// parts of one batch that Applied splits over goroutines) are evaluated
// in whatever order they take the truck's lock; the store
// itself lets the later timestamp win, and the rule state can at worst be
// one update behind until the truck's next update.
//
// # Finding the rules that can apply
//
// Most rules are false for most updates, so the index (ruleIndex) lists
// the rules by necessary conditions that are cheaper to test than the rule:
//
//   - zone guard (rules.Program.ZoneGuard): the rule can be true only
//     inside a zone or within a radius of it. Its reach is the zone's box
//     grown by the radius (see zoneReach for why that is conservative with
//     fence's distance). A grid of 0.5° cells (fleet.Grid) lists in each cell the zone
//     rules whose reach touches it; an update looks up its cell, and tests
//     each listed rule's reach box before evaluating it. A truck far from
//     every zone pays one cell lookup, however many zone rules there are.
//   - conditions (rules.Program.Conditions): clauses of atoms "term op
//     constant", where a term is a numeric expression of the update
//     (speed, dt, hour(), abs(heading - prev.heading), moved_m and a
//     cheap upper bound of it, ...), and the rule can be true only if
//     every clause has an atom that holds; so (hour() >= 20 || hour() < 4)
//     && speed > 10 has the clauses {hour() >= 20, hour() < 4} and
//     {speed > 10}. A rule without a zone guard is keyed by one clause
//     (chooseKey: the one least likely to hold, guessed from typical
//     field ranges) and listed under each of its atoms, in groups by
//     (term, operator) sorted by constant, so the rules whose atom holds
//     are a prefix of their group: the walk stops at the first that fails.
//   - a rule with neither is checked on every update.
//
// A rule found by the walk, the cell or on every update is evaluated only
// if its other clauses hold; and when its conditions are exact (the rule
// is nothing but comparisons of terms with constants joined by && and
// ||), they are its value and it is not evaluated at all. Each term is
// computed at most once per update, when first needed; the fields read
// inline (rules.FastFields) once per update. Stats.Evaluations counts
// Program.Eval calls, so not the exact rules decided by their conditions.
//
// TestIndexNeverSkips checks, on random zones (poles and antimeridian
// included), rules (comparisons of fields and computed terms, && and ||,
// zone tests) and updates (any hour, NaN and infinite speeds), that the
// index finds exactly the rules that evaluating every rule finds true.
//
// # State
//
// Only (rule, truck) pairs whose condition is true now have state. A
// truck is keyed by a 64-bit maphash of its ID (seed fixed for the
// process, never 0) and belongs to one of 64 stripes, each with its own
// mutex, an open-addressing table of trucks and pointer-free slabs:
//
//	tab     []entry                 head entries by key: linear probing from
//	                                the key's high bits, at most 3/4 full,
//	                                key 0 = free slot
//	entry                           64 B: | key u64 | next u32 | n u8 | pad 3 | 4 × pair |
//	pair                            12 B: | since u32 | rec u32 | slot u24 | gen u8 |
//	over    []entry                 overflow entries, chained from the head by next
//	recs    []firingRec             32 B: | key u64 | since u32 | ts u32 | lat i32 | lon i32 |
//	                                      | idOff u32 | slot u24 | gen u8 |   key 0 = free
//	ids     []byte                  the firing records' truck IDs, appended,
//	                                each as | len u8 | bytes |
//	has     [4096]atomic.Uint32     counting filter of the trucks with pairs
//
// A pair names its rule by slot (a small integer reused after the rule is
// freed) and the slot's generation, and its firing record, if it fires,
// by index (0 = none). A truck with more than 4 pairs chains overflow
// entries. Finding a truck reads one cache line in the common case, and
// Applied loads the filter counters and table entries of 32 updates
// ahead, without the lock (the table is published through an atomic
// pointer and its keys are written atomically), so that their cache
// misses overlap. The firing records are the registry Firing lists, so
// its size follows the number of firing alerts; each holds the truck ID
// (typically 13 bytes) for listing and for resolving it without an
// update. A truck costs nothing while no rule is true for it, and an
// update that makes no rule true skips the stripe's lock when the
// lock-free counting filter says the truck has no pairs. A deletion in
// the table shifts the rest of its probe run back (no tombstones); freed
// overflow entries and records go to free lists; when a rule is deleted,
// a table less than 1/8 full shrinks and a stripe whose slabs are more
// than half free is compacted, and the ID arena is rewritten when more
// than half of it is garbage.
//
// Invariants (Check): every truck in the table is found from its home
// slot, in the right stripe, with a chain of 1–4-pair entries with its key
// and no two pairs for one slot; the table is at most 3/4 full, counts
// its trucks and is the one published for prefetching; the counted pairs, used overflow entries plus free ones, and
// live records plus free ones add up; a pair has a firing record exactly
// when it fires, the record matches it (key, slot, generation, since, ID
// hashing to the key), and no record is shared; the filter counts every
// truck with pairs.
//
// # Persistence
//
// With Options.Dir, every change of the zones and rules is appended to
// <Dir>/config.log and fsynced before it takes effect (and before
// PutRule, PutRules, DeleteRule, PutZone or DeleteZone returns), so a
// change costs one record, however large the configuration: O(change).
// A failed append changes nothing (the record is cut off again, or the
// log rewritten before the next append) and is reported as ErrPersist.
// The log:
//
//	| magic "FLEETCFG\0\0\0\1" (12 B) | record | record | …
//	record: | crc u32 | len u32 | payload (len bytes) |     little-endian
//	crc:    CRC-32C (Castagnoli) of the len field and the payload
//	payload, one JSON object per change:
//	  {"op":"zone","name":"yard-3","geometry":<GeoJSON Polygon or MultiPolygon>}
//	  {"op":"-zone","name":"yard-3"}
//	  {"op":"rules","rules":[{"name":"speeding","when":"speed > 90","for":"30s","severity":"warning"}, …]}
//	  {"op":"-rule","name":"speeding"}
//
// A bulk PutRules is one "rules" record, so it is all or none on disk as
// in memory. New replays the records in order. A last record cut short,
// or whose checksum fails and which ends the file, is a crash during an
// append that was never acknowledged: it is cut off (with a warning) and
// the next append follows the last whole record. A record that fails its
// checksum and is followed by more data, an unknown operation, a deletion
// of what does not exist, or a zone or rule that no longer parses or
// compiles is an error naming the file (and the offset), and New fails.
//
// Compaction: once the log is larger than twice its size after the last
// rewrite plus 1 MiB, the next change first rewrites it with only the
// current configuration (zones by name, then rules by name in records of
// 4096): written to config.log.tmp, fsynced, renamed over config.log and
// the directory fsynced, so a crash leaves the old log or the new one,
// which say the same. The rewrite costs O(configuration) once per
// O(configuration) bytes of changes, so O(1) amortised per change, and
// the log stays within about twice the configuration (plus 1 MiB).
//
// A config.json of earlier versions (the whole document, rewritten on
// every change) is imported on first start into a new log and removed.
//
// Loading indexes everything once: the zones are put into the fence.Set
// in one step (fence.Set.PutMany) and the rules indexed in one pass.
//
// # Concurrency
//
// An Evaluator is safe for concurrent use. Applied and Removed run from many
// goroutines at once: each holds evalMu shared for its whole run, loads
// the index (rules, their lists, zones) and takes one stripe
// lock per truck (the filter counters and the prefetching loads of table
// keys are atomic and need none); a batch of at least 4096 updates is
// split over up to GOMAXPROCS goroutines that end before Applied returns,
// each counting its transitions in its own scratch until then. With no rules,
// Applied and Removed cost one atomic load. Configuration changes are
// serialised by a mutex (held while appending to the log); each then
// changes the index in place holding evalMu exclusively for the change
// alone (O(change): the rule's clauses, its entries in its groups, its
// cells; a zone's new shape re-lists only the rules it guards; DeleteZone
// checks a count of the rules naming the zone, scanning them only to
// list them in its refusal), so a
// batch never sees half a change and, once a change returns, no batch
// evaluates the old configuration; deleting or replacing rules then
// sweeps their pairs stripe by stripe, in one pass for a bulk PutRules.
// Readers (GetRule, Rules, GetZone, Zones) take no lock; Firing takes
// evalMu shared and each stripe's lock in turn, Stats each stripe's lock.
// Emit is called with no lock held; so is Sync, once after the last
// Emit of a call that emitted (the server waits there for the sinks'
// outboxes to be durable before an update is acknowledged).
package alert
