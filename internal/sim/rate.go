package sim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseRate parses an update rate: a non-negative number of updates per
// second, optionally followed by "/s" ("50000", "50000/s", "2.5e5/s"), or a
// count per minute or hour ("600/m", "600/min", "3600/h"). "0" and ""
// mean unlimited and return 0. Underscores between digits are not accepted;
// "k" and "M" suffixes on the number are ("50k/s", "1M").
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	per := 1.0
	if i := strings.IndexByte(t, '/'); i >= 0 {
		switch strings.TrimSpace(t[i+1:]) {
		case "s", "sec", "second":
			per = 1
		case "m", "min", "minute":
			per = 60
		case "h", "hour":
			per = 3600
		default:
			return 0, fmt.Errorf("sim: rate %q: unknown unit after '/' (want s, min or h)", s)
		}
		t = strings.TrimSpace(t[:i])
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1e6, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || strings.ContainsAny(t, "_xXpPnN") {
		// ParseFloat accepts "_", hex floats, "NaN" and "Inf"; a rate
		// should be a plain decimal number.
		return 0, fmt.Errorf("sim: rate %q: want a number of updates per second such as 50000 or 50000/s", s)
	}
	v = v*mult/per + 0 // + 0 turns -0 into 0
	if v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("sim: rate %q: must be a finite number >= 0", s)
	}
	return v, nil
}
