package geo

import "math"

// Simplify returns the indexes of the points of a polyline to keep so that
// no dropped point lies further than tolM metres from the simplified line
// (Douglas–Peucker), in order, the first and last always kept. Distances
// are measured on a local equirectangular projection of each segment,
// exact enough for drawing at the scales a trail is drawn (errors well
// under 1% for segments under 100 km away from the poles). at returns
// point i in degrees. Memory: the result and a stack of segments.
func Simplify(n int, at func(i int) (lat, lon float64), tolM float64, keep []int) []int {
	keep = keep[:0]
	if n == 0 {
		return keep
	}
	if n <= 2 || !(tolM > 0) {
		for i := range n {
			keep = append(keep, i)
		}
		return keep
	}
	marked := make([]bool, n)
	marked[0], marked[n-1] = true, true
	stack := [][2]int{{0, n - 1}}
	for len(stack) > 0 {
		seg := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		a, b := seg[0], seg[1]
		if b-a < 2 {
			continue
		}
		aLat, aLon := at(a)
		bLat, bLon := at(b)
		// Project onto a plane through a: x east, y north, in metres.
		kx := EarthRadiusM * math.Cos(aLat*math.Pi/180) * math.Pi / 180
		ky := EarthRadiusM * math.Pi / 180
		bx, by := lonDelta(bLon, aLon)*kx, (bLat-aLat)*ky
		l2 := bx*bx + by*by
		far, farD := -1, tolM*tolM
		for i := a + 1; i < b; i++ {
			lat, lon := at(i)
			x, y := lonDelta(lon, aLon)*kx, (lat-aLat)*ky
			var d2 float64
			if t := (x*bx + y*by) / l2; l2 == 0 || t <= 0 {
				d2 = x*x + y*y
			} else if t >= 1 {
				d2 = (x-bx)*(x-bx) + (y-by)*(y-by)
			} else {
				px, py := x-t*bx, y-t*by
				d2 = px*px + py*py
			}
			if d2 > farD {
				far, farD = i, d2
			}
		}
		if far >= 0 {
			marked[far] = true
			stack = append(stack, [2]int{a, far}, [2]int{far, b})
		}
	}
	for i, m := range marked {
		if m {
			keep = append(keep, i)
		}
	}
	return keep
}

// lonDelta is a-b in degrees the short way round, in [-180, 180].
func lonDelta(a, b float64) float64 {
	d := a - b
	switch {
	case d > 180:
		d -= 360
	case d < -180:
		d += 360
	}
	return d
}
