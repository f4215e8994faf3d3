package geo

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseBox parses the bbox query parameter the HTTP API takes everywhere,
// "minLon,minLat,maxLon,maxLat" in degrees (GeoJSON order). Spaces around
// a number are allowed; minLon > maxLon is a box across the antimeridian;
// minLat must not exceed maxLat. The error's text is written for the API
// client, names the parameter and quotes what was wrong, e.g.
//
//	bbox maxLat 95 out of range [-90, 90]
func ParseBox(s string) (Box, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return Box{}, fmt.Errorf("bbox %q must be four numbers: minLon,minLat,maxLon,maxLat", clip(s))
	}
	names := [4]string{"minLon", "minLat", "maxLon", "maxLat"}
	var v [4]float64
	for i, p := range parts {
		p = strings.TrimSpace(p)
		f, err := strconv.ParseFloat(p, 64)
		var ne *strconv.NumError
		overflow := errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange)
		switch {
		case err != nil && !overflow:
			return Box{}, fmt.Errorf("bbox %s %q is not a number", names[i], clip(p))
		case math.IsNaN(f) || math.IsInf(f, 0) && !overflow:
			return Box{}, fmt.Errorf("bbox %s %q is not a finite number", names[i], clip(p))
		}
		// A magnitude past float64 (1e999) parsed to ±Inf: out of range.
		lim := 180.0
		if i%2 == 1 {
			lim = 90
		}
		if !(f >= -lim && f <= lim) {
			return Box{}, fmt.Errorf("bbox %s %s out of range [%v, %v]", names[i], clip(p), -lim, lim)
		}
		v[i] = f
	}
	if v[1] > v[3] {
		return Box{}, fmt.Errorf("bbox minLat %s is greater than maxLat %s", clip(strings.TrimSpace(parts[1])), clip(strings.TrimSpace(parts[3])))
	}
	return Box{MinLon: v[0], MinLat: v[1], MaxLon: v[2], MaxLat: v[3]}, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
