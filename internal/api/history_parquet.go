package api

import (
	"net/http"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/history"
)

// ExportRow is one point of GET /v1/history/export?format=parquet, the
// file's schema: timestamps as Parquet TIMESTAMP(MILLIS, UTC) (whole
// seconds), degrees and km/h as doubles and floats that convert back to
// the stored fixed point exactly, and one optional column per attribute,
// named and in the unit of its JSON field (altitude in metres, voltages in
// volts...). DuckDB, Spark and pandas read it as is.
type ExportRow struct {
	ID             string   `parquet:"id,dict"`
	TS             int64    `parquet:"ts,timestamp(millisecond)"`
	Lat            float64  `parquet:"lat"`
	Lon            float64  `parquet:"lon"`
	Speed          float32  `parquet:"speed"` // km/h, 0.1 resolution
	Heading        int32    `parquet:"heading"`
	Alt            *float64 `parquet:"alt,optional"`
	Ignition       *float64 `parquet:"ignition,optional"`
	Motion         *float64 `parquet:"motion,optional"`
	Odometer       *float64 `parquet:"odometer,optional"`
	ExtVoltage     *float64 `parquet:"ext_voltage,optional"`
	BatteryVoltage *float64 `parquet:"battery_voltage,optional"`
	BatteryLevel   *float64 `parquet:"battery_level,optional"`
	Accuracy       *float64 `parquet:"accuracy,optional"`
	HDOP           *float64 `parquet:"hdop,optional"`
	Satellites     *float64 `parquet:"satellites,optional"`
}

// attr is the column of r that holds attribute a (TestExportRowAttrs
// keeps it in step with package fleet).
func (r *ExportRow) attr(a fleet.Attr) **float64 {
	switch a {
	case fleet.Altitude:
		return &r.Alt
	case fleet.Ignition:
		return &r.Ignition
	case fleet.Motion:
		return &r.Motion
	case fleet.Odometer:
		return &r.Odometer
	case fleet.ExtVoltage:
		return &r.ExtVoltage
	case fleet.BatteryVoltage:
		return &r.BatteryVoltage
	case fleet.BatteryLevel:
		return &r.BatteryLevel
	case fleet.Accuracy:
		return &r.Accuracy
	case fleet.HDOP:
		return &r.HDOP
	case fleet.Satellites:
		return &r.Satellites
	}
	return nil
}

// exportRow fills r with p of truck id; the attributes' values go into
// vals, which must have room for them (r points into it).
func exportRow(r *ExportRow, id string, p *history.Point, vals *[]float64) {
	*r = ExportRow{ID: id, TS: int64(p.TS) * 1000, Lat: p.LatDeg(), Lon: p.LonDeg(),
		Speed: float32(p.Speed) / 10, Heading: int32(p.Heading)}
	for a := range fleet.Attr(fleet.NumAttrs) {
		if v, ok := p.Attrs.Get(a); ok {
			*vals = append(*vals, a.Float(v))
			*r.attr(a) = &(*vals)[len(*vals)-1]
		}
	}
}

// exportRowGroup bounds a row group, the unit the writer buffers: about
// 40 bytes a row before compression.
const exportRowGroup = 128 << 10

func (s *Server) exportParquet(w http.ResponseWriter, h *history.History, from, to uint32) {
	hd := w.Header()
	hd.Set("Content-Type", "application/vnd.apache.parquet")
	hd.Set("Content-Disposition", `attachment; filename="fleetd-history-`+strconv.FormatUint(uint64(from), 10)+"-"+strconv.FormatUint(uint64(to), 10)+`.parquet"`)
	hd.Set("Trailer", incompleteTrailer)
	w.WriteHeader(http.StatusOK)
	pw := parquet.NewGenericWriter[ExportRow](w, parquet.MaxRowsPerRowGroup(exportRowGroup))
	rows := make([]ExportRow, 0, 4096)
	vals := make([]float64, 0, cap(rows)*fleet.NumAttrs) // never grown: rows point into it
	flush := func() error {
		_, err := pw.Write(rows)
		rows, vals = rows[:0], vals[:0]
		return err
	}
	ans, err := h.Export(from, to, func(id []byte, ps []history.Point) error {
		sid := string(id)
		for i := range ps {
			rows = rows[:len(rows)+1]
			exportRow(&rows[len(rows)-1], sid, &ps[i], &vals)
			if len(rows) == cap(rows) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = pw.Close()
	}
	if err != nil {
		return // the client went away; the file is cut short and unreadable
	}
	w.Header().Set(incompleteTrailer, strconv.FormatBool(ans.Incomplete))
}
