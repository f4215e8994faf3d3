package osmand

import (
	"errors"
	"math"
	"net/url"
	"strings"
	"testing"

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
	} {
		v, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		u, err := Parse(v, tt.unit, now)
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
		if v, err := url.ParseQuery(query); err == nil {
			check(Parse(v, Knots, now))
		}
		check(ParseJSON(body, now))
	})
}
