package osmand

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

const now = 1764000000

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		query string
		unit  SpeedUnit
		want  fleet.Position
		alt   int32 // 0.1 m; -1: none
		err   string
	}{
		{"id=t1&lat=40.7128&lon=-74.006&timestamp=1763999000&speed=10&bearing=90.4&altitude=12.34", Knots,
			fleet.MakePosition(40.7128, -74.006, 1763999000, 18.52, 90), 123, ""},
		{"deviceid=t1&lat=1&lon=2", Knots, fleet.MakePosition(1, 2, now, 0, 0), -1, ""},
		{"id=t1&location=40.5,-73.25&heading=359.6", Knots, fleet.MakePosition(40.5, -73.25, now, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&timestamp=1763999000123", Knots, fleet.MakePosition(1, 2, 1763999000, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&timestamp=1763999000.9", Knots, fleet.MakePosition(1, 2, 1763999000, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&timestamp=2025-11-24T15:40:00Z", Knots, fleet.MakePosition(1, 2, 1764000000-1200, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&timestamp=2025-11-24T17:40:00.123%2B02:00", Knots, fleet.MakePosition(1, 2, 1764000000-1200, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&timestamp=2025-11-24+15:40:00", Knots, fleet.MakePosition(1, 2, 1764000000-1200, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&speed=10", MetresPerSecond, fleet.MakePosition(1, 2, now, 36, 0), -1, ""},
		{"id=t1&lat=1&lon=2&speed=10", KmPerHour, fleet.MakePosition(1, 2, now, 10, 0), -1, ""},
		{"id=t1&lat=1&lon=2&speed=10", MilesPerHour, fleet.MakePosition(1, 2, now, 16.09344, 0), -1, ""},
		{"id=t1&lat=1&lon=2&speed=-1&bearing=-1&batt=80&accuracy=5&hdop=1.2&foo=bar", Knots, fleet.MakePosition(1, 2, now, 0, 0), -1, ""},
		{"lat=1&lon=2", Knots, fleet.Position{}, -1, "missing id"},
		{"id=t1&lon=2", Knots, fleet.Position{}, -1, "missing lat"},
		{"id=t1&lat=1", Knots, fleet.Position{}, -1, "missing lon"},
		{"id=t1&lat=91&lon=2", Knots, fleet.Position{}, -1, "lat 91 out of range"},
		{"id=t1&lat=1&lon=-180.5", Knots, fleet.Position{}, -1, "lon -180.5 out of range"},
		{"id=t1&lat=x&lon=2", Knots, fleet.Position{}, -1, `lat "x" is not a number`},
		{"id=t1&lat=NaN&lon=2", Knots, fleet.Position{}, -1, `is not a number`},
		{"id=t1&location=40.5", Knots, fleet.Position{}, -1, "want lat,lon"},
		{"id=t1&lat=1&lon=2&timestamp=yesterday", Knots, fleet.Position{}, -1, "want Unix seconds"},
		{"id=t1&lat=1&lon=2&timestamp=0", Knots, fleet.Position{}, -1, "out of range"},
		{"id=t1&lat=1&lon=2&timestamp=1e15", Knots, fleet.Position{}, -1, "out of range"},
		{"id=t1&lat=1&lon=2&speed=600", Knots, fleet.Position{}, -1, "speed 1111.2 km/h out of range"},
		{"id=t1&lat=1&lon=2&bearing=361", Knots, fleet.Position{}, -1, "bearing 361 out of range"},
		{"id=t1&lat=1&lon=2&altitude=1e6", Knots, fleet.Position{}, -1, "altitude 1e+06 out of range"},
		{"id=t1&lat=%zz&lon=2", Knots, fleet.Position{}, -1, `lat "%zz": invalid URL escape`},
		{"id=t%2&lat=1&lon=2", Knots, fleet.Position{}, -1, `id "t%2": invalid URL escape`},
		{"id=t1&lat=1&lon=2&timestamp=2025-11-24T15:40:00%zz", Knots, fleet.Position{}, -1, "invalid URL escape"},
		{"id=&deviceid=t1&lat=1&lon=2", Knots, fleet.MakePosition(1, 2, now, 0, 0), -1, ""},
		{"id=t1&lat=1&lon=2&lat=3&bearing=&heading=7", Knots, fleet.MakePosition(1, 2, now, 0, 7), -1, ""},
		{"%69d=t1&l%61t=1&lon=2&junk&=x&y=", Knots, fleet.MakePosition(1, 2, now, 0, 0), -1, ""},
		{"id=t1&lat=+1&lon=2%2E5", Knots, fleet.MakePosition(1, 2.5, now, 0, 0), -1, ""},
	} {
		u, err := ParseQuery(tt.query, tt.unit, now)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrSyntax) {
				t.Errorf("%s: error %v, want %q", tt.query, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.query, err)
			continue
		}
		alt, has := u.Attrs.Get(fleet.Altitude)
		if u.Position != tt.want || string(u.ID) != "t1" || (tt.alt < 0) == has || has && alt != tt.alt {
			t.Errorf("%s: %+v (alt %d %v), want %+v", tt.query, u, alt, has, tt.want)
		}
	}
}

func TestParseJSON(t *testing.T) {
	body := `{"location":{"timestamp":"2025-11-24T15:40:00.000Z","coords":{"latitude":40.7128,"longitude":-74.006,
		"accuracy":5,"speed":10,"heading":181,"altitude":-3.5},"is_moving":true,"odometer":1234,
		"battery":{"level":0.8,"is_charging":false},"activity":{"type":"in_vehicle"}},"device_id":"phone-1"}`
	u, err := ParseJSON([]byte(body), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := fleet.MakePosition(40.7128, -74.006, now-1200, 36, 181); u.Position != want || string(u.ID) != "phone-1" {
		t.Fatalf("%+v, want %+v", u, want)
	}
	if a, ok := u.Attrs.Get(fleet.Altitude); !ok || a != -35 {
		t.Fatalf("altitude %d %v", a, ok)
	}
	u, err = ParseJSON([]byte(`{"device_id":"p","location":{"timestamp":1763999000,"coords":{"latitude":1,"longitude":2}}}`), now)
	if err != nil || u.TS != 1763999000 || u.Attrs.Has(fleet.Altitude) {
		t.Fatalf("numeric timestamp: %+v %v", u, err)
	}
	for _, tt := range []struct{ body, err string }{
		{`{`, "invalid JSON"},
		{`{"location":{"coords":{"latitude":1,"longitude":2}}}`, "missing device_id"},
		{`{"device_id":"p"}`, "missing location.coords"},
		{`{"device_id":"p","location":{"coords":{"latitude":1}}}`, "latitude or longitude"},
		{`{"device_id":"p","location":{"coords":{"latitude":1,"longitude":"2"}}}`, "invalid JSON"},
		{`{"device_id":"p","location":{"timestamp":"soon","coords":{"latitude":1,"longitude":2}}}`, "timestamp"},
		{`{"device_id":"p","location":{"coords":{"latitude":100,"longitude":2}}}`, "lat 100 out of range"},
	} {
		if _, err := ParseJSON([]byte(tt.body), now); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", tt.body, err, tt.err)
		}
	}
}

func TestParseSpeedUnit(t *testing.T) {
	for s, want := range map[string]SpeedUnit{"kn": Knots, "": Knots, "mps": MetresPerSecond, "kmh": KmPerHour, "mph": MilesPerHour} {
		if u, err := ParseSpeedUnit(s); err != nil || u != want {
			t.Errorf("%q: %v %v", s, u, err)
		}
	}
	if _, err := ParseSpeedUnit("furlongs"); err == nil {
		t.Error("furlongs accepted")
	}
}

// FuzzParse: any query or JSON body gives an update that passes the
// ingest ranges, or an ErrSyntax error; never a panic.
func FuzzParse(f *testing.F) {
	f.Add("id=t1&lat=40.7128&lon=-74.006&timestamp=1763999000&speed=10&bearing=90&altitude=12", []byte(`{"device_id":"p","location":{"coords":{"latitude":1,"longitude":2}}}`))
	f.Add("id=t&location=1,2&timestamp=2025-11-24T15:40:00Z", []byte(`{"device_id":"p","location":{"timestamp":"2025-11-24T15:40:00Z","coords":{"latitude":1,"longitude":2,"speed":3}}}`))
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		check := func(u fleet.Update, err error) {
			if err != nil {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("error %v is not ErrSyntax", err)
				}
				return
			}
			if !u.Position.Valid() || u.TS == 0 || !u.Attrs.Valid() || math.IsNaN(u.LatDeg()) {
				t.Fatalf("invalid update %+v", u)
			}
		}
		check(ParseQuery(query, Knots, now))
		var p Params
		p.AddBytes(body) // a form body, then the query
		p.Add(query)
		check(Parse(&p, Knots, now))
		check(ParseJSON(body, now))
	})
}

// TestParseAttrs: accuracy, hdop, batt, ignition, motion and odometer are
// kept as fleet attributes when they are numbers (or true/false for the
// flags) in range, and left out otherwise without refusing the point.
func TestParseAttrs(t *testing.T) {
	attrs := func(kv ...int32) (a fleet.Attrs) {
		for i := 0; i < len(kv); i += 2 {
			a.Set(fleet.Attr(kv[i]), kv[i+1])
		}
		return a
	}
	for _, tt := range []struct {
		query string
		want  fleet.Attrs
	}{
		{"accuracy=4.25&hdop=1.2&batt=80&ignition=true&motion=0&odometer=123456.4",
			attrs(int32(fleet.Accuracy), 43, int32(fleet.HDOP), 12, int32(fleet.BatteryLevel), 80,
				int32(fleet.Ignition), 1, int32(fleet.Motion), 0, int32(fleet.Odometer), 123456)},
		{"ignition=false&motion=true&altitude=10", attrs(int32(fleet.Ignition), 0, int32(fleet.Motion), 1, int32(fleet.Altitude), 100)},
		{"ignition=1&batt=100", attrs(int32(fleet.Ignition), 1, int32(fleet.BatteryLevel), 100)},
		// Unknown (-1), out of range, not a number, a bad escape: left out.
		{"accuracy=-1&hdop=101&batt=150&ignition=2&motion=yes&odometer=-5", fleet.Attrs{}},
		{"accuracy=x&hdop=NaN&batt=%zz&ignition=on&odometer=1e10", fleet.Attrs{}},
	} {
		u, err := ParseQuery("id=t1&lat=1&lon=2&"+tt.query, Knots, now)
		if err != nil || u.Attrs != tt.want {
			t.Errorf("%s: %+v %v, want %+v", tt.query, u.Attrs, err, tt.want)
		}
	}
	body := `{"device_id":"p","location":{"coords":{"latitude":1,"longitude":2,"accuracy":5.5},
		"is_moving":false,"odometer":1234.6,"battery":{"level":0.87}}}`
	u, err := ParseJSON([]byte(body), now)
	want := attrs(int32(fleet.Accuracy), 55, int32(fleet.Motion), 0, int32(fleet.Odometer), 1235, int32(fleet.BatteryLevel), 87)
	if err != nil || u.Attrs != want {
		t.Fatalf("JSON: %+v %v, want %+v", u.Attrs, err, want)
	}
	u, err = ParseJSON([]byte(`{"device_id":"p","location":{"coords":{"latitude":1,"longitude":2,"accuracy":-1},"battery":{"level":-1}}}`), now)
	if err != nil || u.Attrs != (fleet.Attrs{}) {
		t.Fatalf("JSON unknowns: %+v %v", u.Attrs, err)
	}
}

// TestParamsMatchesURL: for queries without empty or repeated values,
// Params reads what url.ParseQuery does (seeded, random queries of the
// keys, escaped at random).
func TestParamsMatchesURL(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	alphabet := "0123456789.-+ %&=,:TZabc"
	for range 2000 {
		var q strings.Builder
		want := map[key]string{}
		for k := range numKeys {
			if r.IntN(3) == 0 {
				continue
			}
			var v strings.Builder
			for range 1 + r.IntN(8) {
				v.WriteByte(alphabet[r.IntN(len(alphabet))])
			}
			want[k] = v.String()
			if q.Len() > 0 {
				q.WriteByte('&')
			}
			q.WriteString(keyName[k] + "=" + url.QueryEscape(v.String()))
		}
		var p Params
		p.Add(q.String())
		uv, err := url.ParseQuery(q.String())
		if err != nil {
			t.Fatal(err)
		}
		for k := range numKeys {
			got, err := p.value(k)
			if err != nil || string(got) != want[k] || uv.Get(keyName[k]) != want[k] {
				t.Fatalf("%s: %s = %q %v, url %q, want %q", q.String(), keyName[k], got, err, uv.Get(keyName[k]), want[k])
			}
		}
	}
}
