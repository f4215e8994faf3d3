// Package rules compiles and runs fleetd's alert conditions: small
// expressions over one GPS update of one truck, such as
//
//	speed > 90 && !inside("depot-7")          speeding outside the depot
//	prev.speed - speed > 30 && dt < 3         harsh braking
//
// A rule is compiled once, the way CPython compiles source: tokenize →
// parse → AST → check → fold → compile to bytecode, and the bytecode runs
// on a small stack VM on every update, in nanoseconds and without
// allocating.
//
//	p, err := rules.Compile(src, zones) // zones: a ZoneResolver
//	...
//	if p.Eval(&in, tester) { fire() }   // tester: a ZoneTester
//
// # Grammar
//
// In EBNF; white space (space, tab, CR, LF) separates tokens and is
// otherwise ignored. Binary operators are left-associative, with Go's
// precedence (the comparisons share one level, so a < b < c parses and is
// then rejected by the type checker).
//
//	Rule      = Expr .
//	Expr      = AndExpr { "||" AndExpr } .
//	AndExpr   = CmpExpr { "&&" CmpExpr } .
//	CmpExpr   = AddExpr { ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) AddExpr } .
//	AddExpr   = MulExpr { ( "+" | "-" ) MulExpr } .
//	MulExpr   = Unary { ( "*" | "/" | "%" ) Unary } .
//	Unary     = ( "-" | "!" ) Unary | Primary .
//	Primary   = number | string | "true" | "false" | Name [ Args ] | "(" Expr ")" .
//	Name      = ident [ "." ident ] .
//	Args      = "(" [ Expr { "," Expr } ] ")" .
//	ident     = ( letter | "_" ) { letter | digit | "_" } .      (ASCII)
//	number    = digits [ "." [ digits ] ] [ exponent ] | "." digits [ exponent ] .
//	exponent  = ( "e" | "E" ) [ "+" | "-" ] digits .
//	string    = `"` { character | escape } `"` .                 (Go escapes)
//
// A source is at most 4096 bytes and nests at most 64 levels (parentheses,
// unary operators, calls).
//
// # Names and types
//
// There are three types: number (float64), bool and string. Strings exist
// only as the zone-name argument of inside and near, and must be literals.
//
//	speed, heading, lat, lon, ts       number   the update (km/h, degrees, degrees, degrees, Unix s)
//	prev.speed ... prev.ts             number   the truck's previous state; the current values if none
//	dt                                 number   ts - prev.ts; 0 without a previous state
//	moved_m                            number   haversine metres from prev to now; 0 without one
//	inside(zone string)                bool     ZoneTester.Inside
//	near(zone string, metres number)   bool     Inside || DistanceM <= metres
//	distance_m(lat, lon number)        number   haversine metres from the truck to the point
//	abs(x), min(a, b), max(a, b)       number   NaN if an argument is NaN
//	hour()                             number   UTC hour of ts, 0-23
//
// Haversine uses a sphere of radius 6,371,008.8 m.
//
// Type rules: + - * / % and unary - take numbers and give a number; < <=
// > >= take numbers; == and != take two numbers or two bools; && || !
// take bools; comparisons and && || ! give bools. The whole rule must be a
// bool. A constant near() radius must be finite and >= 0. Unknown fields,
// functions and zones, wrong argument counts or types, and type errors are
// compile errors (*Error) that give the line and byte column of the
// offending text and, through Detail or %+v, show it under a caret:
//
//	1:9: unknown field "sped" (did you mean "speed"?)
//	  speed > sped
//	          ^^^^
//
// Arithmetic is IEEE 754: division by zero gives ±Inf or NaN, % is
// math.Mod, comparisons with NaN are false except != which is true. No
// input and no rule makes Eval panic.
//
// # Compilation
//
// After checking, the compiler folds constants (speed > 50 + 40 compares
// with 90; true && x is x; x && false is false), sorts the operands of
// each && and || chain cheapest first (zone tests and haversine last;
// sound because every operand is pure and total), and emits bytecode.
// Comparisons with a constant fuse into one instruction, and inside an &&
// or || chain into a compare-and-branch; jumps to jumps are threaded, and
// a jump to the final RETURN becomes a jump-return, so that a typical
// rule that is false returns from its first instruction.
//
// # Bytecode
//
// An instruction is one opcode byte followed by its operands: a field
// (u8, an index into the field table above), a constant (u8, an index into
// the program's constant pool), a zone (u8, an index into the program's
// zone-ID table), a jump target (u16 little endian, an absolute offset;
// 0 means "return the value"):
//
//	+--------+---------+---------+-----------+
//	| opcode | field?  | const?  | target?   |   1 to 5 bytes; a zone
//	|   u8   |   u8    |   u8    | u16 LE    |   operand (u8) comes alone
//	+--------+---------+---------+-----------+
//
// The stack holds float64s; bools are 1 and 0. In the stack column, a
// branch's effect is given as "falls through | jumps".
//
//	opcode                 operands          stack                effect
//	LOAD_FIELD             field             → v                  push the field
//	LOAD_CONST             const             → v                  push the constant
//	LOAD_TRUE, LOAD_FALSE  -                 → b                  push 1 or 0
//	NEG, NOT, ABS          -                 x → y                -x, x == 0, |x|
//	ADD SUB MUL DIV MOD    -                 x y → z              x op y (MOD: math.Mod)
//	MIN, MAX               -                 x y → z              NaN if either is NaN
//	LT LE GT GE EQ NE      -                 x y → b              x op y
//	<cmp>_CONST            const             x → b                x op const
//	<cmp>_FIELD_CONST      field const       → b                  field op const
//	AND_<cmp>_FIELD_CONST  field const tgt   → | → 0              jump with 0 unless field op const
//	OR_<cmp>_FIELD_CONST   field const tgt   → | → 1              jump with 1 if field op const
//	AND_<cmp>_CONST        const tgt         x → | x → 0          jump with 0 unless x op const
//	OR_<cmp>_CONST         const tgt         x → | x → 1          jump with 1 if x op const
//	JUMP_IF_FALSE_OR_POP   tgt               b → | b → b          jump if b == 0
//	JUMP_IF_TRUE_OR_POP    tgt               b → | b → b          jump if b != 0
//	HOUR                   -                 → h                  UTC hour of ts
//	DISTANCE_M             -                 lat lon → m          haversine from the truck
//	INSIDE                 zone              → b                  ZoneTester.Inside
//	NEAR                   zone              r → b                Inside || DistanceM <= r
//	RETURN                 -                 v →                  the result
//
// A jump to target 0 returns the value it would leave instead.
//
// <cmp> is one of LT LE GT GE EQ NE. Field-operand instructions name only
// the fields read without a call (the float fields of both states and
// dt); ts, prev.ts and moved_m go through LOAD_FIELD. Program.Disasm
// prints a listing; testdata/disasm pins representative ones.
//
// # VM invariants
//
// Program.verify checks each compiled program (Compile panics with a BUG
// message if one fails, and the tests and the fuzzer run it):
//
//   - every opcode is valid and its operands index the field table, the
//     constant pool (at most 256 entries) or the zone table (at most 256);
//   - jumps go forward, to an instruction start, so Eval always ends;
//   - the stack depth is the same on every path into an instruction,
//     never negative, never above the program's bound, which is computed
//     at compile time (at most 256; a deeper rule is a compile error);
//   - the code (at most 65535 bytes) ends with the single RETURN, reached
//     with depth 1, and every jump-return leaves depth 1.
//
// Eval keeps the stack in its own frame (8 slots; rules that need more
// run on a 256-slot frame), so it never allocates; it does not retain its
// arguments. The ZoneTester may be nil when the rule names no zones.
//
// # Zone guard
//
// ZoneGuard reports a zone and radius such that the rule can be true only
// for a truck inside the zone or within the radius of it (for inside(),
// radius 0): the rule is inside(...), near(..., constant), or an &&
// chain with one among its operands. The engine indexes rules by it and
// skips them for trucks far away.
//
// # Conditions
//
// Conditions reports necessary conditions in conjunctive normal form:
// clauses of atoms "term op constant", the rule being true only if every
// clause has an atom that holds. A term (Term) is a numeric
// sub-expression that reads only the update: a field, hour(),
// abs(heading - prev.heading), distance_m(...). They are derived from the
// folded tree, before code generation:
//
//	N(t op c) = {{t op c}}                       (also c op t, mirrored)
//	N(a && b) = N(a) ∪ N(b)
//	N(a || b) = {A ∪ B : A ∈ N(a), B ∈ N(b)}     (at most 16 clauses of 8 atoms)
//	N(true) = {}, N(false) = {{}}
//	N(anything else) = {}                        (!, term op term, zone tests, ...)
//
// and they are exact, equivalent to the rule, when no "anything else"
// and no limit was met: a caller that has checked them need not call
// Eval. moved_m > c (>=, ==) also gives the clause upper(moved_m) > c
// (>=): upper(moved_m) is movedUpper, a bound of moved_m from a few
// multiplications instead of a haversine, so that most updates are
// rejected without computing moved_m. Term.Eval computes a term bit for
// bit as the rule's own code does (the same code, compiled alone, or the
// same function), Atom.Holds compares as the VM does (NaN false except
// for !=), and FastFields reads the fields most atoms test in one call.
// TestConditionsRandom and FuzzCompile check the conditions against Eval,
// NaN and infinities included.
//
// # Cache
//
// Cache shares one Program among rules with the same source, keyed by a
// hash of the source and validated against the zone IDs its names resolved
// to, so that recompiling is skipped (the .pyc idea). It is an LRU of
// bounded size with hit, miss and eviction counters.
//
// # Concurrency
//
// A Program is immutable after Compile: any number of goroutines may call
// Eval, Disasm, ZoneGuard, Conditions and the other methods at once, and
// Term.Eval on its terms. A Cache is safe
// for concurrent use. Compile itself has no shared state. The
// ZoneResolver and ZoneTester must be safe for the concurrency their
// caller uses, and pure: the compiler reorders and skips zone tests.
package rules
