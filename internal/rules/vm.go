package rules

import (
	"math"
	"unsafe"
)

// smallStack is the stack size almost every rule fits. Rules that need
// more (up to maxStack) run on a maxStack-slot stack, so that the common
// frame, and the zeroing of its stack at every call, stays small.
const smallStack = 8

// Eval runs the program on one update. It does not allocate, does not
// retain in or z, and never panics on any Input (NaN and ±Inf included):
// arithmetic follows IEEE 754. z may be nil when the program names no
// zones (len(p.Zones()) == 0).
func (p *Program) Eval(in *Input, z ZoneTester) bool {
	if p.maxStack > smallStack {
		return run[[maxStack]float64](p, in, z) != 0
	}
	return run[[smallStack]float64](p, in, z) != 0
}

// stackArray is the VM stack. run is instantiated for the small stack
// and for the largest one a rule may need, so that the stack is an array
// in run's frame with a constant length: no allocation, no slice header
// to keep in registers, bounds checks against a constant. (Measured: ~2%
// faster on BenchmarkRuleSet100 than passing a slice.)
type stackArray interface {
	[smallStack]float64 | [maxStack]float64
}

// evalNumber runs a program of either result type and returns the raw
// top of stack (bools are 1 and 0). For tests.
func (p *Program) evalNumber(in *Input, z ZoneTester) float64 {
	if p.maxStack > smallStack {
		return run[[maxStack]float64](p, in, z)
	}
	return run[[smallStack]float64](p, in, z)
}

// run is the interpreter loop. S has at least p.maxStack slots (verify
// checks the program's bound at compile time); sp indexes the top of
// stack. Bools are 1 and 0.
//
// The loop handles the cheap instructions inline and sends the rest
// (calls into math, the zone tester, rare fields) to runSlow. With no
// call on the common paths the compiler keeps pc and sp in registers.
// Measured on BenchmarkEval/speed_heading_dt (2-core shared Xeon): a
// call per field load made the loop spill and reload at every dispatch,
// 17.4 ns/op; fastField inline and the rest in runSlow, 13.3 ns/op; the
// fused compare-and-branch instructions with jump-return, about 7 ns/op.
func run[S stackArray](p *Program, in *Input, z ZoneTester) float64 {
	var stack S
	code, consts := p.code, p.consts
	sp := -1
	pc := 0
	for {
		switch op := opcode(code[pc]); op {
		case opLoadField:
			v, ok := fastField(in, code[pc+1])
			if !ok {
				sp, pc = runSlow(p, &stack, sp, pc, in, z)
				continue
			}
			sp++
			stack[sp] = v
			pc += 2
		case opLoadConst:
			sp++
			stack[sp] = consts[code[pc+1]]
			pc += 2
		case opLoadTrue:
			sp++
			stack[sp] = 1
			pc++
		case opLoadFalse:
			sp++
			stack[sp] = 0
			pc++
		case opNeg:
			stack[sp] = -stack[sp]
			pc++
		case opNot:
			stack[sp] = b2f(stack[sp] == 0)
			pc++
		case opAdd:
			sp--
			stack[sp] += stack[sp+1]
			pc++
		case opSub:
			sp--
			stack[sp] -= stack[sp+1]
			pc++
		case opMul:
			sp--
			stack[sp] *= stack[sp+1]
			pc++
		case opDiv:
			sp--
			stack[sp] /= stack[sp+1]
			pc++
		case opLT:
			sp--
			stack[sp] = b2f(stack[sp] < stack[sp+1])
			pc++
		case opLE:
			sp--
			stack[sp] = b2f(stack[sp] <= stack[sp+1])
			pc++
		case opGT:
			sp--
			stack[sp] = b2f(stack[sp] > stack[sp+1])
			pc++
		case opGE:
			sp--
			stack[sp] = b2f(stack[sp] >= stack[sp+1])
			pc++
		case opEQ:
			sp--
			stack[sp] = b2f(stack[sp] == stack[sp+1])
			pc++
		case opNE:
			sp--
			stack[sp] = b2f(stack[sp] != stack[sp+1])
			pc++
		case opLTC:
			stack[sp] = b2f(stack[sp] < consts[code[pc+1]])
			pc += 2
		case opLEC:
			stack[sp] = b2f(stack[sp] <= consts[code[pc+1]])
			pc += 2
		case opGTC:
			stack[sp] = b2f(stack[sp] > consts[code[pc+1]])
			pc += 2
		case opGEC:
			stack[sp] = b2f(stack[sp] >= consts[code[pc+1]])
			pc += 2
		case opEQC:
			stack[sp] = b2f(stack[sp] == consts[code[pc+1]])
			pc += 2
		case opNEC:
			stack[sp] = b2f(stack[sp] != consts[code[pc+1]])
			pc += 2
		// The fused field compares only name fast fields (verify checks
		// it), so fastField's ok is always true here.
		case opLTFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v < consts[code[pc+2]])
			pc += 3
		case opLEFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v <= consts[code[pc+2]])
			pc += 3
		case opGTFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v > consts[code[pc+2]])
			pc += 3
		case opGEFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v >= consts[code[pc+2]])
			pc += 3
		case opEQFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v == consts[code[pc+2]])
			pc += 3
		case opNEFC:
			v, _ := fastField(in, code[pc+1])
			sp++
			stack[sp] = b2f(v != consts[code[pc+2]])
			pc += 3
		// The fused compare-and-branch ops of && and || chains; a
		// target of 0 returns the chain's value at once.
		case opAndLTFC:
			v, _ := fastField(in, code[pc+1])
			if !(v < consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opAndLEFC:
			v, _ := fastField(in, code[pc+1])
			if !(v <= consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opAndGTFC:
			v, _ := fastField(in, code[pc+1])
			if !(v > consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opAndGEFC:
			v, _ := fastField(in, code[pc+1])
			if !(v >= consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opAndEQFC:
			v, _ := fastField(in, code[pc+1])
			if !(v == consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opAndNEFC:
			v, _ := fastField(in, code[pc+1])
			if !(v != consts[code[pc+2]]) {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 0
				}
				sp++
				stack[sp] = 0
				pc = t
			} else {
				pc += 5
			}
		case opOrLTFC:
			v, _ := fastField(in, code[pc+1])
			if v < consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opOrLEFC:
			v, _ := fastField(in, code[pc+1])
			if v <= consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opOrGTFC:
			v, _ := fastField(in, code[pc+1])
			if v > consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opOrGEFC:
			v, _ := fastField(in, code[pc+1])
			if v >= consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opOrEQFC:
			v, _ := fastField(in, code[pc+1])
			if v == consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opOrNEFC:
			v, _ := fastField(in, code[pc+1])
			if v != consts[code[pc+2]] {
				t := int(code[pc+3]) | int(code[pc+4])<<8
				if t == 0 {
					return 1
				}
				sp++
				stack[sp] = 1
				pc = t
			} else {
				pc += 5
			}
		case opAndLTC:
			if !(stack[sp] < consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opAndLEC:
			if !(stack[sp] <= consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opAndGTC:
			if !(stack[sp] > consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opAndGEC:
			if !(stack[sp] >= consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opAndEQC:
			if !(stack[sp] == consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opAndNEC:
			if !(stack[sp] != consts[code[pc+1]]) {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 0
				}
				stack[sp] = 0
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrLTC:
			if stack[sp] < consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrLEC:
			if stack[sp] <= consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrGTC:
			if stack[sp] > consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrGEC:
			if stack[sp] >= consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrEQC:
			if stack[sp] == consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opOrNEC:
			if stack[sp] != consts[code[pc+1]] {
				t := int(code[pc+2]) | int(code[pc+3])<<8
				if t == 0 {
					return 1
				}
				stack[sp] = 1
				pc = t
			} else {
				sp--
				pc += 4
			}
		case opJumpIfFalseOrPop:
			if stack[sp] != 0 {
				sp--
				pc += 3
			} else if t := int(code[pc+1]) | int(code[pc+2])<<8; t != 0 {
				pc = t
			} else {
				return 0
			}
		case opJumpIfTrueOrPop:
			if stack[sp] == 0 {
				sp--
				pc += 3
			} else if t := int(code[pc+1]) | int(code[pc+2])<<8; t != 0 {
				pc = t
			} else {
				return 1
			}
		case opAbs:
			stack[sp] = math.Abs(stack[sp])
			pc++
		case opMin:
			sp--
			stack[sp] = min(stack[sp], stack[sp+1])
			pc++
		case opMax:
			sp--
			stack[sp] = max(stack[sp], stack[sp+1])
			pc++
		case opHour:
			sp++
			stack[sp] = hourUTC(in.TS)
			pc++
		case opReturn:
			return stack[sp]
		default:
			sp, pc = runSlow(p, &stack, sp, pc, in, z)
		}
	}
}

// runSlow executes the one instruction at pc that run does not handle
// inline and returns the new sp and pc.
func runSlow[S stackArray](p *Program, stack *S, sp, pc int, in *Input, z ZoneTester) (int, int) {
	code, cur := p.code, &in.State
	switch opcode(code[pc]) {
	case opLoadField:
		sp++
		(*stack)[sp] = loadField(in, code[pc+1])
		return sp, pc + 2
	case opMod:
		sp--
		(*stack)[sp] = math.Mod((*stack)[sp], (*stack)[sp+1])
		return sp, pc + 1
	case opHour:
		sp++
		(*stack)[sp] = hourUTC(cur.TS)
		return sp, pc + 1
	case opDistance:
		sp--
		(*stack)[sp] = haversineM(cur.Lat, cur.Lon, (*stack)[sp], (*stack)[sp+1])
		return sp, pc + 1
	case opInside:
		sp++
		(*stack)[sp] = b2f(z.Inside(p.zoneIDs[code[pc+1]], cur.Lat, cur.Lon))
		return sp, pc + 2
	case opNear:
		id := p.zoneIDs[code[pc+1]]
		(*stack)[sp] = b2f(z.Inside(id, cur.Lat, cur.Lon) || z.DistanceM(id, cur.Lat, cur.Lon) <= (*stack)[sp])
		return sp, pc + 2
	}
	panic("BUG: rules: bad opcode")
}

// fastField reads the fields most rules use, inline in the VM loop: the
// float64 fields of the current and previous state, and dt. ok is false
// for the others (ts, prev.ts, moved_m), which loadField reads.
//
// Without a previous state, prev.* read the current values and dt and
// moved_m are 0.
func fastField(in *Input, f byte) (v float64, ok bool) {
	if f == byte(fDT) {
		if !in.HasPrev {
			return 0, true
		}
		return float64(in.TS) - float64(in.Prev.TS), true
	}
	if f > byte(fDT) {
		return 0, false
	}
	s := &in.State
	if f >= 4 && in.HasPrev {
		s = &in.Prev
	}
	// SAFETY: a State starts with the four float64 fields Lat, Lon,
	// Speed, Heading at offsets 0, 8, 16, 24 (asserted below), so its
	// first 32 bytes are a valid [4]float64, and f&3 < 4.
	return (*[4]float64)(unsafe.Pointer(s))[f&3], true
}

// The layout fastField relies on, asserted at compile time: the index is
// a constant that is out of range unless every term is 0.
var _ = [1]struct{}{}[unsafe.Offsetof(State{}.Lat)+
	(unsafe.Offsetof(State{}.Lon)^8)+
	(unsafe.Offsetof(State{}.Speed)^16)+
	(unsafe.Offsetof(State{}.Heading)^24)]

// isFastField reports whether fastField reads f.
func isFastField(f fieldID) bool { return f <= fDT }

// loadField reads any field; see fastField.
func loadField(in *Input, f byte) float64 {
	cur, prev := &in.State, &in.State
	if in.HasPrev {
		prev = &in.Prev
	}
	if v, ok := fastField(in, f); ok {
		return v
	}
	switch fieldID(f) {
	case fTS:
		return float64(cur.TS)
	case fPrevTS:
		return float64(prev.TS)
	case fMovedM:
		return haversineM(prev.Lat, prev.Lon, cur.Lat, cur.Lon)
	}
	panic("BUG: rules: bad field")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// hourUTC is the UTC hour of the day, 0–23, of a Unix time in seconds,
// negative times included.
func hourUTC(ts int64) float64 {
	s := ts % 86400
	if s < 0 {
		s += 86400
	}
	return float64(s / 3600)
}

// earthRadiusM is the mean Earth radius (IUGG), the sphere haversine uses.
const earthRadiusM = 6371008.8

// haversineM is the great-circle distance in metres between two points
// given in degrees, by the haversine formula:
//
//	a = sin²(Δφ/2) + cos φ1 · cos φ2 · sin²(Δλ/2),   d = 2R · asin(√a)
//
// Points less than about 1.1° apart in both latitude and longitude (every
// moved_m between two GPS fixes) take haversineNear, which evaluates the
// same formula with one math.Sincos call instead of five trigonometric
// calls. Profiled: haversine was 15% of BenchmarkRuleSet100.
func haversineM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	if math.Abs(dLat) < nearRad && math.Abs(dLon) < nearRad {
		return haversineNear(lat1*rad, dLat, dLon)
	}
	sLat := math.Sin(dLat / 2)
	sLon := math.Sin(dLon / 2)
	a := sLat*sLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sLon*sLon
	// Rounding can push a a hair above 1 for antipodal points.
	return 2 * earthRadiusM * math.Asin(math.Sqrt(min(a, 1)))
}

// nearRad bounds the angles haversineNear accepts. Below it the Taylor
// series it uses are exact to double precision: the first omitted term of
// sin(y), y⁹/9!, is below 2e-21·|y| for |y| < 0.02, and the first omitted
// term of asin(x), 63x¹¹/2816, below 1e-20·x for x < 0.015.
const nearRad = 0.02

// haversineNear is haversineM for |dLat|, |dLon| < nearRad (radians):
// cos φ2 = cos φ1 · cos Δφ − sin φ1 · sin Δφ, with cos Δφ = 1 − 2 sin²(Δφ/2),
// and the small sines and the arcsine by their Taylor series.
func haversineNear(lat1, dLat, dLon float64) float64 {
	sin1, cos1 := math.Sincos(lat1)
	sLat := sinSmall(dLat / 2)
	sLon := sinSmall(dLon / 2)
	cos2 := cos1*(1-2*sLat*sLat) - sin1*sinSmall(dLat)
	a := sLat*sLat + cos1*cos2*sLon*sLon
	return 2 * earthRadiusM * asinSmall(math.Sqrt(a))
}

// sinSmall is sin(y) for |y| < nearRad.
func sinSmall(y float64) float64 {
	y2 := y * y
	return y * (1 - y2*(1.0/6)*(1-y2*(1.0/20)*(1-y2*(1.0/42))))
}

// asinSmall is asin(x) for 0 <= x < 0.015.
func asinSmall(x float64) float64 {
	x2 := x * x
	return x * (1 + x2*(1.0/6+x2*(3.0/40+x2*(5.0/112+x2*(35.0/1152)))))
}
