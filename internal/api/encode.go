package api

import (
	"strconv"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wire"
)

// appendTruck appends {"id","lat","lon","ts","speed","heading"} and the
// attributes present in a (e.g. "alt").
func appendTruck(dst []byte, id []byte, p *store.Position, a *fleet.Attrs) []byte {
	dst = appendHit(dst, id, p, false, 0)
	if a.Mask == 0 {
		return dst
	}
	return append(wire.AppendAttrs(dst[:len(dst)-1], a), '}')
}

// appendHit appends one result object; distance_m only when withDist.
func appendHit(dst []byte, id []byte, p *store.Position, withDist bool, distM float64) []byte {
	dst = append(dst, `{"id":`...)
	dst = wire.AppendString(dst, id)
	dst = append(dst, `,"lat":`...)
	dst = wire.AppendCoord(dst, p.Lat)
	dst = append(dst, `,"lon":`...)
	dst = wire.AppendCoord(dst, p.Lon)
	if withDist {
		dst = append(dst, `,"distance_m":`...)
		dst = wire.AppendMetres(dst, distM)
	}
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendUint(dst, uint64(p.TS), 10)
	dst = append(dst, `,"speed":`...)
	dst = wire.AppendSpeed(dst, p.Speed)
	dst = append(dst, `,"heading":`...)
	dst = strconv.AppendUint(dst, uint64(p.Heading), 10)
	return append(dst, '}')
}

// appendReportBody appends the fields of a positions answer shared by the
// 200 and 507 forms, without the enclosing braces:
//
//	"accepted":A,"rejected":R,"stale":S,"errors":[…],"unknown_fields":[…]
func appendReportBody(dst []byte, accepted, rejected, stale int, rep *ingest.Report) []byte {
	dst = append(dst, `"accepted":`...)
	dst = strconv.AppendInt(dst, int64(accepted), 10)
	dst = append(dst, `,"rejected":`...)
	dst = strconv.AppendInt(dst, int64(rejected), 10)
	dst = append(dst, `,"stale":`...)
	dst = strconv.AppendInt(dst, int64(stale), 10)
	return appendReportErrors(dst, rep)
}

// appendReportErrors appends ,"errors":[…],"unknown_fields":[…] of rep.
func appendReportErrors(dst []byte, rep *ingest.Report) []byte {
	dst = append(dst, `,"errors":[`...)
	for i, e := range rep.Errors {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"line":`...)
		dst = strconv.AppendInt(dst, int64(e.Line), 10)
		dst = append(dst, `,"error":`...)
		dst = wire.AppendString(dst, e.Error)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"unknown_fields":[`...)
	for i, name := range rep.Unknown {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = wire.AppendString(dst, name)
	}
	return append(dst, ']')
}
