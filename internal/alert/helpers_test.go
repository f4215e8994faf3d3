package alert

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

func fmtRect(minLat, minLon, maxLat, maxLon float64) string {
	return fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%v,%v],[%v,%v],[%v,%v],[%v,%v],[%v,%v]]]}`,
		minLon, minLat, maxLon, minLat, maxLon, maxLat, minLon, maxLat, minLon, minLat)
}

// circle is a GeoJSON Polygon approximating a circle of radius m metres
// with n vertices.
func circle(lat, lon, m float64, n int) string {
	var b strings.Builder
	b.WriteString(`{"type":"Polygon","coordinates":[[`)
	dLat := m / mPerDeg
	dLon := dLat / math.Cos(lat*math.Pi/180)
	for i := 0; i <= n; i++ {
		a := 2 * math.Pi * float64(i%n) / float64(n)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		b.WriteString(strconv.FormatFloat(lon+dLon*math.Cos(a), 'f', 7, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(lat+dLat*math.Sin(a), 'f', 7, 64))
		b.WriteByte(']')
	}
	b.WriteString(`]]}`)
	return b.String()
}
