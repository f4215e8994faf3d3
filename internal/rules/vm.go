package rules

import "math"

// smallStack is the stack Eval keeps in its own frame. Almost every rule
// fits; the rest run through evalLarge, so that Eval's frame (and the
// zeroing of the array at every call) stays small.
const smallStack = 8

// Eval runs the program on one update. It does not allocate, does not
// retain in or z, and never panics on any Input (NaN and ±Inf included):
// arithmetic follows IEEE 754. z may be nil when the program names no
// zones (len(p.Zones()) == 0).
func (p *Program) Eval(in *Input, z ZoneTester) bool {
	if p.maxStack > smallStack {
		return p.evalLarge(in, z) != 0
	}
	var stack [smallStack]float64
	return p.run(stack[:], in, z) != 0
}

//go:noinline
func (p *Program) evalLarge(in *Input, z ZoneTester) float64 {
	var stack [maxStack]float64
	return p.run(stack[:], in, z)
}

// evalNumber runs a program of either result type and returns the raw
// top of stack (bools are 1 and 0). For tests.
func (p *Program) evalNumber(in *Input, z ZoneTester) float64 {
	if p.maxStack > smallStack {
		return p.evalLarge(in, z)
	}
	var stack [smallStack]float64
	return p.run(stack[:], in, z)
}

// run is the interpreter loop. stack has at least p.maxStack slots (an
// invariant verify checks at compile time); sp indexes the top of stack.
// Bools are 1 and 0.
func (p *Program) run(stack []float64, in *Input, z ZoneTester) float64 {
	code, consts := p.code, p.consts
	sp := -1
	pc := 0
	for {
		switch opcode(code[pc]) {
		case opLoadField:
			sp++
			stack[sp] = loadField(in, code[pc+1])
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
		case opMod:
			sp--
			stack[sp] = math.Mod(stack[sp], stack[sp+1])
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
		case opLTFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) < consts[code[pc+2]])
			pc += 3
		case opLEFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) <= consts[code[pc+2]])
			pc += 3
		case opGTFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) > consts[code[pc+2]])
			pc += 3
		case opGEFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) >= consts[code[pc+2]])
			pc += 3
		case opEQFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) == consts[code[pc+2]])
			pc += 3
		case opNEFC:
			sp++
			stack[sp] = b2f(loadField(in, code[pc+1]) != consts[code[pc+2]])
			pc += 3
		case opJumpIfFalseOrPop:
			if stack[sp] == 0 {
				pc = int(code[pc+1]) | int(code[pc+2])<<8
			} else {
				sp--
				pc += 3
			}
		case opJumpIfTrueOrPop:
			if stack[sp] != 0 {
				pc = int(code[pc+1]) | int(code[pc+2])<<8
			} else {
				sp--
				pc += 3
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
		case opDistance:
			sp--
			stack[sp] = haversineM(in.Lat, in.Lon, stack[sp], stack[sp+1])
			pc++
		case opInside:
			sp++
			stack[sp] = b2f(z.Inside(p.zoneIDs[code[pc+1]], in.Lat, in.Lon))
			pc += 2
		case opNear:
			id := p.zoneIDs[code[pc+1]]
			stack[sp] = b2f(z.Inside(id, in.Lat, in.Lon) || z.DistanceM(id, in.Lat, in.Lon) <= stack[sp])
			pc += 2
		case opReturn:
			return stack[sp]
		default:
			panic("BUG: rules: bad opcode")
		}
	}
}

// loadField reads one field of the update. Without a previous state the
// prev.* fields equal the current ones and dt and moved_m are 0.
func loadField(in *Input, f byte) float64 {
	switch fieldID(f) {
	case fSpeed:
		return in.Speed
	case fHeading:
		return in.Heading
	case fLat:
		return in.Lat
	case fLon:
		return in.Lon
	}
	return loadOtherField(in, fieldID(f))
}

// loadOtherField is loadField's out-of-line part, kept apart so that
// loadField inlines into the VM loop.
func loadOtherField(in *Input, f fieldID) float64 {
	if f == fTS {
		return float64(in.TS)
	}
	if !in.HasPrev {
		switch f {
		case fPrevSpeed:
			return in.Speed
		case fPrevHeading:
			return in.Heading
		case fPrevLat:
			return in.Lat
		case fPrevLon:
			return in.Lon
		case fPrevTS:
			return float64(in.TS)
		}
		return 0 // dt, moved_m
	}
	switch f {
	case fPrevSpeed:
		return in.Prev.Speed
	case fPrevHeading:
		return in.Prev.Heading
	case fPrevLat:
		return in.Prev.Lat
	case fPrevLon:
		return in.Prev.Lon
	case fPrevTS:
		return float64(in.Prev.TS)
	case fDT:
		return float64(in.TS) - float64(in.Prev.TS)
	case fMovedM:
		return haversineM(in.Prev.Lat, in.Prev.Lon, in.Lat, in.Lon)
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
// given in degrees.
func haversineM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	sLat := math.Sin((lat2 - lat1) * rad / 2)
	sLon := math.Sin((lon2 - lon1) * rad / 2)
	a := sLat*sLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sLon*sLon
	// Rounding can push a a hair above 1 for antipodal points.
	return 2 * earthRadiusM * math.Asin(math.Sqrt(min(a, 1)))
}
