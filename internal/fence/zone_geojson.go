package fence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits on an uploaded GeoJSON body.
const (
	// MaxBodyBytes caps a zone's GeoJSON text (about 40 bytes a position
	// leaves room for MaxVertices with properties besides).
	MaxBodyBytes = 8 << 20

	// MaxDepth caps the nesting of arrays and objects. A MultiPolygon
	// inside a Feature needs 6; the rest is for the Feature's properties.
	MaxDepth = 32
)

// ErrTooLarge is wrapped by the errors for a body, a nesting or a vertex
// count over the limits, so an HTTP handler can answer 413.
var ErrTooLarge = errors.New("fence: zone too large")

// ReadZone reads at most MaxBodyBytes from r and parses them as Parse does.
func ReadZone(r io.Reader) (*Zone, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fence: reading zone: %w", err)
	}
	return Parse(data)
}

// Parse parses a GeoJSON (RFC 7946) Polygon or MultiPolygon geometry, or a
// Feature whose geometry is one, and compiles it into a Zone. Positions
// are [longitude, latitude] in degrees, optionally followed by an
// altitude, which is ignored. Every ring must have at least 4 positions
// and be closed; the first ring of a polygon is its exterior and the
// others are holes (ring orientation is not checked: the even-odd rule
// does not need it). Errors start with "fence:".
func Parse(data []byte) (*Zone, error) {
	if len(data) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, MaxBodyBytes)
	}
	if err := checkDepth(data); err != nil {
		return nil, err
	}
	var doc struct {
		Type        string          `json:"type"`
		Coordinates json.RawMessage `json:"coordinates"`
		Geometry    json.RawMessage `json:"geometry"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("fence: invalid GeoJSON: %w", err)
	}
	if doc.Type == "Feature" {
		if len(doc.Geometry) == 0 || bytes.Equal(doc.Geometry, []byte("null")) {
			return nil, errors.New(`fence: Feature has no geometry`)
		}
		doc.Type, doc.Coordinates = "", nil
		if err := json.Unmarshal(doc.Geometry, &doc); err != nil {
			return nil, fmt.Errorf("fence: invalid Feature geometry: %w", err)
		}
		if doc.Type == "Feature" {
			return nil, errors.New(`fence: a Feature's geometry must be a Polygon or MultiPolygon, not a Feature`)
		}
	}
	noCoords := len(doc.Coordinates) == 0 || bytes.Equal(doc.Coordinates, []byte("null"))
	switch doc.Type {
	case "Polygon":
		if noCoords {
			return nil, errors.New(`fence: Polygon has no "coordinates"`)
		}
		var c [][][]float64
		if err := json.Unmarshal(doc.Coordinates, &c); err != nil {
			return nil, fmt.Errorf("fence: Polygon coordinates: %w", err)
		}
		rings, err := positions(false, 0, c)
		if err != nil {
			return nil, err
		}
		return compile(false, [][][][2]float64{rings})
	case "MultiPolygon":
		if noCoords {
			return nil, errors.New(`fence: MultiPolygon has no "coordinates"`)
		}
		var c [][][][]float64
		if err := json.Unmarshal(doc.Coordinates, &c); err != nil {
			return nil, fmt.Errorf("fence: MultiPolygon coordinates: %w", err)
		}
		polys := make([][][][2]float64, len(c))
		for p := range c {
			rings, err := positions(true, p, c[p])
			if err != nil {
				return nil, err
			}
			polys[p] = rings
		}
		return compile(true, polys)
	case "":
		return nil, errors.New(`fence: missing "type" (want Polygon, MultiPolygon or a Feature wrapping one)`)
	default:
		return nil, fmt.Errorf("fence: unsupported type %q (want Polygon, MultiPolygon or a Feature wrapping one)", doc.Type)
	}
}

// positions checks that every position has 2 or 3 numbers and keeps the
// first two.
func positions(multi bool, p int, rings [][][]float64) ([][][2]float64, error) {
	out := make([][][2]float64, len(rings))
	for r, ring := range rings {
		out[r] = make([][2]float64, len(ring))
		for i, q := range ring {
			if len(q) != 2 && len(q) != 3 {
				where := fmt.Sprintf("ring %d position %d", r, i)
				if multi {
					where = fmt.Sprintf("polygon %d %s", p, where)
				}
				return nil, fmt.Errorf("fence: %s: want [longitude, latitude] or [longitude, latitude, altitude], got %d numbers", where, len(q))
			}
			out[r][i] = [2]float64{q[0], q[1]}
		}
	}
	return out, nil
}

// checkDepth rejects JSON nested deeper than MaxDepth, before it is
// decoded. Malformed JSON is left for the decoder to report.
func checkDepth(data []byte) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth > MaxDepth {
				return fmt.Errorf("%w: JSON nested deeper than %d levels", ErrTooLarge, MaxDepth)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// AppendGeoJSON appends the zone's geometry as a GeoJSON Polygon or
// MultiPolygon (as it was given; a Feature's properties are not kept) with
// every coordinate exactly as parsed, altitudes dropped. Parsing the
// result gives an equal zone.
func (z *Zone) AppendGeoJSON(dst []byte) []byte {
	pts := z.pts
	if z.orig != nil {
		pts = z.orig
	}
	if z.multi {
		dst = append(dst, `{"type":"MultiPolygon","coordinates":[`...)
	} else {
		dst = append(dst, `{"type":"Polygon","coordinates":`...)
	}
	for p := range len(z.polys) - 1 {
		if p > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		for r := z.polys[p]; r < z.polys[p+1]; r++ {
			if r > z.polys[p] {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			for i, q := range pts[z.rings[r]:z.rings[r+1]] {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, '[')
				dst = strconv.AppendFloat(dst, q.X, 'f', -1, 64)
				dst = append(dst, ',')
				dst = strconv.AppendFloat(dst, q.Y, 'f', -1, 64)
				dst = append(dst, ']')
			}
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	if z.multi {
		dst = append(dst, ']')
	}
	return append(dst, '}')
}
