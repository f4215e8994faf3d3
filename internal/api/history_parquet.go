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
// the stored fixed point exactly, and one optional column per attribute
// (altitude in metres). DuckDB, Spark and pandas read it as is.
type ExportRow struct {
	ID      string   `parquet:"id,dict"`
	TS      int64    `parquet:"ts,timestamp(millisecond)"`
	Lat     float64  `parquet:"lat"`
	Lon     float64  `parquet:"lon"`
	Speed   float32  `parquet:"speed"` // km/h, 0.1 resolution
	Heading int32    `parquet:"heading"`
	Alt     *float64 `parquet:"alt,optional"`
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
	alts := make([]float64, 0, 4096)
	flush := func() error {
		_, err := pw.Write(rows)
		rows, alts = rows[:0], alts[:0]
		return err
	}
	ans, err := h.Export(from, to, func(id []byte, ps []history.Point) error {
		sid := string(id)
		for i := range ps {
			p := &ps[i]
			r := ExportRow{ID: sid, TS: int64(p.TS) * 1000, Lat: p.LatDeg(), Lon: p.LonDeg(),
				Speed: float32(p.Speed) / 10, Heading: int32(p.Heading)}
			if v, ok := p.Attrs.Get(fleet.Altitude); ok {
				alts = append(alts, fleet.Altitude.Float(v))
				r.Alt = &alts[len(alts)-1]
			}
			rows = append(rows, r)
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
