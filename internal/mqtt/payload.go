package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/ingest"
)

// ErrPayload is wrapped by the errors of the payload decoders.
var ErrPayload = errors.New("mqtt")

// errNotLocation marks an OwnTracks message that is not a position
// (transition, waypoint, lwt, card...): acknowledged, not counted bad.
var errNotLocation = fmt.Errorf("%w: not an OwnTracks location", ErrPayload)

// OwnTracksID makes the truck ID of topic owntracks/<user>/<device>:
// "<user>:<device>"; ok is false for another topic.
func OwnTracksID(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "owntracks/")
	if !ok {
		return "", false
	}
	user, dev, ok := strings.Cut(rest, "/")
	if !ok || user == "" || dev == "" || strings.Contains(dev, "/") {
		return "", false
	}
	return user + ":" + dev, true
}

// ownTracks is an OwnTracks location message; its other keys are skipped.
type ownTracks struct {
	Type string   `json:"_type"`
	Lat  *float64 `json:"lat"`
	Lon  *float64 `json:"lon"`
	Tst  *float64 `json:"tst"`
	Vel  *float64 `json:"vel"`
	Cog  *float64 `json:"cog"`
	Alt  *float64 `json:"alt"`
	Acc  *float64 `json:"acc"`
	Batt *float64 `json:"batt"`
}

// DecodeOwnTracks decodes an OwnTracks location (doc.go) of truck id; now
// is the ts when tst is absent.
func DecodeOwnTracks(id string, payload []byte, now int64) (fleet.Update, error) {
	u := fleet.Update{ID: []byte(id)}
	var m ownTracks
	if err := json.Unmarshal(payload, &m); err != nil {
		return u, fmt.Errorf("%w: OwnTracks payload: invalid JSON: %v", ErrPayload, err)
	}
	if m.Type != "location" {
		return u, errNotLocation
	}
	if m.Lat == nil || m.Lon == nil {
		return u, fmt.Errorf("%w: OwnTracks location without lat or lon", ErrPayload)
	}
	lat, lon := *m.Lat, *m.Lon
	ts := now
	if m.Tst != nil {
		ts = int64(*m.Tst)
	}
	val := func(p *float64) float64 {
		if p == nil || *p < 0 { // OwnTracks sends -1 when unknown
			return 0
		}
		return *p
	}
	kmh, cog := val(m.Vel), val(m.Cog)
	switch {
	case !(lat >= -90 && lat <= 90):
		return u, fmt.Errorf("%w: lat %v out of range [-90, 90]", ErrPayload, lat)
	case !(lon >= -180 && lon <= 180):
		return u, fmt.Errorf("%w: lon %v out of range [-180, 180]", ErrPayload, lon)
	case ts < 1 || ts > math.MaxUint32:
		return u, fmt.Errorf("%w: tst %d out of range [1, 4294967295]", ErrPayload, ts)
	case !(kmh <= 1000):
		return u, fmt.Errorf("%w: vel %v km/h out of range [0, 1000]", ErrPayload, kmh)
	case !(cog <= 360):
		return u, fmt.Errorf("%w: cog %v out of range [0, 360]", ErrPayload, cog)
	}
	u.Position = fleet.MakePosition(lat, lon, ts, kmh, cog)
	if m.Alt != nil {
		a, ok := fleet.Altitude.Fixed(*m.Alt)
		if !ok {
			return u, fmt.Errorf("%w: alt %v out of range", ErrPayload, *m.Alt)
		}
		u.Attrs.Set(fleet.Altitude, a)
	}
	// Accuracy and battery are kept where in range, and otherwise left
	// out: a phone's odd battery reading does not cost its position.
	if m.Acc != nil {
		if v, ok := fleet.Accuracy.Fixed(*m.Acc); ok {
			u.Attrs.Set(fleet.Accuracy, v)
		}
	}
	if m.Batt != nil {
		if v, ok := fleet.BatteryLevel.Fixed(*m.Batt); ok {
			u.Attrs.Set(fleet.BatteryLevel, v)
		}
	}
	return u, nil
}

// appendNDJSON decodes a fleetd NDJSON payload (package ingest's format)
// with d, appending its valid updates to dst with their IDs copied into
// arena (so that they outlive d's next call). It returns the rejected
// line count and the first error.
func appendNDJSON(d *ingest.Decoder, dst []fleet.Update, arena *[]byte, payload []byte, now int64) ([]fleet.Update, int, string) {
	ups, rep := d.DecodeNDJSON(payload, now)
	for i := range ups {
		u := &ups[i]
		off := len(*arena)
		*arena = append(*arena, u.ID...)
		dst = append(dst, fleet.Update{
			ID:       (*arena)[off:len(*arena):len(*arena)],
			Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading),
			Attrs:    u.Attrs,
		})
	}
	first := ""
	if len(rep.Errors) > 0 {
		first = fmt.Sprintf("line %d: %s", rep.Errors[0].Line, rep.Errors[0].Error)
	}
	return dst, rep.Rejected, first
}
