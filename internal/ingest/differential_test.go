package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// randomUpdate returns a valid update, biased towards boundaries.
func randomUpdate(r *rand.Rand) Update {
	const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
	n := 1 + r.IntN(16)
	if r.IntN(10) == 0 {
		n = 1 + r.IntN(MaxIDLen)
	}
	id := make([]byte, n)
	for k := range id {
		id[k] = idChars[r.IntN(len(idChars))]
	}
	coord := func(lim float64) float64 {
		switch r.IntN(8) {
		case 0:
			return []float64{-lim, lim, 0, math.Copysign(0, -1), 1e-7, -5e-324}[r.IntN(6)]
		case 1, 2:
			return math.Round((r.Float64()*2-1)*lim*1e6) / 1e6 // GPS precision
		default:
			return (r.Float64()*2 - 1) * lim
		}
	}
	u := Update{ID: id, Lat: coord(90), Lon: coord(180)}
	switch r.IntN(6) {
	case 0:
		u.TS = testNow
	case 1:
		u.TS = []int64{1, math.MaxUint32, 86400}[r.IntN(3)]
	default:
		u.TS = 1 + r.Int64N(math.MaxUint32)
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		u.Speed = math.Round(r.Float64()*1300) / 10
	case 2:
		u.Speed = []float64{1000, 5e-324, 0.1}[r.IntN(3)]
	default:
		u.Speed = r.Float64() * 1000
	}
	if r.IntN(3) > 0 {
		u.Heading = r.Float64() * 360
		if u.Heading >= 360 {
			u.Heading = 0
		}
		if r.IntN(4) == 0 {
			u.Heading = float64(r.IntN(360))
		}
	}
	return u
}

// gen renders JSON text with random (but valid) formatting choices.
type gen struct {
	r  *rand.Rand
	nl bool // newlines allowed in whitespace (array bodies)
}

func (g *gen) ws() string {
	switch g.r.IntN(8) {
	case 0:
		return " "
	case 1:
		return "\t "
	case 2:
		return "\r"
	case 3:
		if g.nl {
			return "\n  "
		}
	}
	return ""
}

// str renders s as a JSON string, escaping each rune at random.
func (g *gen) str(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteString(`\` + string(c))
		case c < 0x20 && g.r.IntN(2) == 0 && strings.ContainsRune("\b\f\n\r\t", c):
			b.WriteString(strings.NewReplacer("\b", `\b`, "\f", `\f`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(string(c)))
		case c < 0x20 || g.r.IntN(6) == 0:
			if c > 0xFFFF {
				hi, lo := (c-0x10000)>>10+0xD800, (c-0x10000)&0x3FF+0xDC00
				fmt.Fprintf(&b, `\u%04x\u%04X`, hi, lo)
			} else {
				fmt.Fprintf(&b, `\u%04x`, c)
			}
		case c == '/' && g.r.IntN(2) == 0:
			b.WriteString(`\/`)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// float renders v in one of the number forms that parse back to v exactly.
func (g *gen) float(v float64) string {
	switch g.r.IntN(7) {
	case 0:
		return strconv.FormatFloat(v, 'e', -1, 64)
	case 1:
		return strconv.FormatFloat(v, 'E', -1, 64)
	case 2:
		return strconv.FormatFloat(v, 'g', 17, 64)
	case 3:
		b, _ := json.Marshal(v)
		return string(b)
	case 4:
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if strings.Contains(s, ".") {
			return s + "000"
		}
		return s + ".0"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

func (g *gen) ts(ts int64) string {
	s := strconv.FormatInt(ts, 10)
	switch g.r.IntN(5) {
	case 0: // fraction, truncated away
		return s + "." + strconv.Itoa(g.r.IntN(1e9))
	case 1: // scientific: d.ddd…e(n-1), possibly with extra fraction digits
		return s[:1] + "." + s[1:] + strconv.Itoa(g.r.IntN(1000)) + "e" + strconv.Itoa(len(s)-1)
	case 2:
		zone := time.FixedZone("", (g.r.IntN(28*60)-14*60)*60)
		return g.str(time.Unix(ts, int64(g.r.IntN(1e9))).In(zone).Format(time.RFC3339Nano))
	case 3:
		return g.str(time.Unix(ts, 0).UTC().Format(time.RFC3339))
	default:
		return s
	}
}

// value renders a random JSON value nested at most depth more levels.
func (g *gen) value(depth int) string {
	k := g.r.IntN(8)
	if depth == 0 {
		k %= 5
	}
	switch k {
	case 0:
		return []string{"null", "true", "false"}[g.r.IntN(3)]
	case 1:
		return g.float((g.r.Float64() - 0.5) * math.Pow(10, float64(g.r.IntN(40)-20)))
	case 2:
		return strconv.Itoa(g.r.IntN(1000) - 500)
	case 3, 4:
		return g.str([]string{"", "x", "héllo wörld", "emoji 😀", "quote \" back \\ slash /", "ctl \x01\n\t", "}{][,:"}[g.r.IntN(7)])
	case 5, 6:
		var parts []string
		for n := g.r.IntN(4); n > 0; n-- {
			parts = append(parts, g.ws()+g.str(fmt.Sprint("k", g.r.IntN(3)))+g.ws()+":"+g.ws()+g.value(depth-1)+g.ws())
		}
		return "{" + g.ws() + strings.Join(parts, ",") + "}"
	default:
		var parts []string
		for n := g.r.IntN(4); n > 0; n-- {
			parts = append(parts, g.ws()+g.value(depth-1)+g.ws())
		}
		return "[" + g.ws() + strings.Join(parts, ",") + "]"
	}
}

var unknownPool = []string{"battery", "driver", "x", "odometer_km", "ünïcödé", `a"b`, "tags", "meta", "LAT", "Id", "ts2", "trailer"}

// update renders u as one JSON object in random form: key order,
// whitespace, escapes, number forms, junk duplicates overridden by the last
// occurrence, and unknown fields with nested values. It returns the object
// and the unknown field names in the order they appear.
func (g *gen) update(u *Update) (obj string, unknown []string) {
	type kv struct{ key, val string }
	var fields []kv
	fields = append(fields, kv{"id", g.str(string(u.ID))}, kv{"lat", g.float(u.Lat)}, kv{"lon", g.float(u.Lon)})
	if u.TS != testNow || g.r.IntN(3) == 0 {
		fields = append(fields, kv{"ts", g.ts(u.TS)})
	} else if g.r.IntN(2) == 0 {
		fields = append(fields, kv{"ts", "null"})
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"speed", u.Speed}, {"heading", u.Heading}} {
		switch {
		case f.v != 0:
			fields = append(fields, kv{f.name, g.float(f.v)})
		case g.r.IntN(3) == 0:
			fields = append(fields, kv{f.name, []string{"null", "0", "0.0", "0e5"}[g.r.IntN(4)]})
		}
	}
	for n := g.r.IntN(4); n > 0; n-- {
		fields = append(fields, kv{unknownPool[g.r.IntN(len(unknownPool))], g.value(3)})
	}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	// A junk duplicate goes before the occurrence that must win.
	if g.r.IntN(4) == 0 {
		for i, f := range fields {
			if fieldOf([]byte(f.key)) != fUnknown {
				junk := kv{f.key, []string{`"junk"`, `{}`, `[1,2]`, `true`, `1e999`, `-1`, `null`}[g.r.IntN(7)]}
				fields = append(fields[:i], append([]kv{junk}, fields[i:]...)...)
				break
			}
		}
	}
	var b strings.Builder
	b.WriteString(g.ws() + "{" + g.ws())
	for i, f := range fields {
		if i > 0 {
			b.WriteString("," + g.ws())
		}
		b.WriteString(g.str(f.key) + g.ws() + ":" + g.ws() + f.val + g.ws())
		if fieldOf([]byte(f.key)) == fUnknown {
			unknown = append(unknown, f.key)
		}
	}
	b.WriteString("}" + g.ws())
	return b.String(), unknown
}

// TestDifferential renders random valid updates with AppendNDJSON and with
// the random generator above (checked against encoding/json), and requires
// both NDJSON and array framings to decode them to the same values.
func TestDifferential(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	g := &gen{r: r}
	const n = 3000
	var want []Update
	var plain, fancy []byte
	var elems []string
	var unknown []string
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		u := randomUpdate(r)
		want = append(want, u)
		plain = AppendNDJSON(plain, &u)

		g.nl = false
		line, names := g.update(&u)
		if ou, valid, comparable := oracle([]byte(line), testNow); !valid || !comparable || !sameUpdate(ou, u) {
			t.Fatalf("generator/oracle disagree on %s: %s valid=%v comparable=%v", line, fmtUpdate(ou), valid, comparable)
		}
		for _, nm := range names {
			if !seen[nm] && len(unknown) < MaxUnknown {
				unknown = append(unknown, nm)
			}
			seen[nm] = true
		}
		fancy = append(fancy, line...)
		fancy = append(fancy, []string{"\n", "\r\n", "\n \t\n", "\n\r\n"}[r.IntN(4)]...)

		g.nl = true
		elem, _ := g.update(&u)
		elems = append(elems, elem)
	}
	array := "[" + strings.Join(elems, ",") + "]"

	check := func(name string, body []byte, decode func(*Decoder, []byte, int64) ([]Update, *Report), wantUnknown []string) {
		var d Decoder
		ups, rep := decode(&d, body, testNow)
		if rep.Rejected != 0 || rep.Accepted != n || len(ups) != n {
			t.Fatalf("%s: accepted %d rejected %d, first errors %v", name, rep.Accepted, rep.Rejected, rep.Errors[:min(len(rep.Errors), 3)])
		}
		for i := range ups {
			if !sameUpdate(ups[i], want[i]) {
				t.Fatalf("%s: update %d\n got %s\nwant %s", name, i, fmtUpdate(ups[i]), fmtUpdate(want[i]))
			}
		}
		if wantUnknown != nil && fmt.Sprint(rep.Unknown) != fmt.Sprint(wantUnknown) {
			t.Errorf("%s: unknown %q\nwant %q", name, rep.Unknown, wantUnknown)
		}
	}
	check("AppendNDJSON", plain, (*Decoder).DecodeNDJSON, nil)
	check("random NDJSON", fancy, (*Decoder).DecodeNDJSON, unknown)
	check("random array", []byte(array), (*Decoder).DecodeArray, nil)
	check("AppendNDJSON as array", ndjsonToArray(plain), (*Decoder).DecodeArray, nil)
}

func TestAppendNDJSON(t *testing.T) {
	tests := []struct {
		u    Update
		want string
	}{
		{Update{ID: []byte("truck-0000042"), Lat: 40.7128, Lon: -74.006, TS: 1764000000, Speed: 52.5, Heading: 90},
			`{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"ts":1764000000,"speed":52.5,"heading":90}` + "\n"},
		{Update{ID: []byte("a"), Lat: 1e-7, Lon: -5e-324, TS: 1},
			`{"id":"a","lat":1e-07,"lon":-5e-324,"ts":1}` + "\n"},
		{Update{ID: []byte("a"), Lat: math.NaN(), Lon: math.Inf(1), TS: 1, Speed: math.Inf(-1)},
			`{"id":"a","lat":null,"lon":null,"ts":1,"speed":null}` + "\n"},
		{Update{ID: []byte("q\"b\\s\n\x01é"), Lat: 1e21, TS: -5},
			`{"id":"q\"b\\s\u000a\u0001é","lat":1e+21,"lon":0,"ts":-5}` + "\n"},
	}
	for _, tt := range tests {
		got := string(AppendNDJSON([]byte("prefix"), &tt.u))
		if got != "prefix"+tt.want {
			t.Errorf("got  %s\nwant prefix%s", got, tt.want)
		}
		if !json.Valid([]byte(strings.TrimSpace(tt.want))) || !utf8.ValidString(tt.want) {
			t.Errorf("not valid JSON: %s", tt.want)
		}
	}
	var dst []byte
	dst = AppendNDJSON(dst, &tests[0].u)
	if n := testing.AllocsPerRun(100, func() { dst = AppendNDJSON(dst[:0], &tests[0].u) }); n != 0 && !raceEnabled {
		t.Errorf("AppendNDJSON into a reused slice: %v allocs", n)
	}
	if !bytes.HasSuffix(dst, []byte("}\n")) {
		t.Error("missing newline")
	}
}
