// Package fleet is fleetd's vocabulary, shared by every layer from the
// decoders to the disk: the truck ID rule, a position in the fixed-point
// form that every layer stores, the update that carries one, and the
// optional attributes that devices send with it. It depends on nothing of
// fleetd's but geo.
//
// # Units (the store's precision; conversions round to nearest)
//
//	Lat, Lon  int32   1e-7 degree (about 1 cm); |lat| ≤ 90°, |lon| ≤ 180°
//	TS        uint32  Unix seconds, 1 … 4294967295 (until 2106)
//	Speed     uint16  0.1 km/h, 0 … 10000 (1000 km/h)
//	Heading   uint16  whole degrees, 0 … 359
//
// A Position is 16 bytes and pointer-free; an Update is a Position, an ID
// slice and an Attrs.
//
// # Optional attributes
//
// Devices send more than a position (altitude, accuracy, ignition,
// odometer, battery…), and most fleets send few of them. An Attrs value
// holds up to NumAttrs of them as fixed-point int32 values with a presence
// mask, so it is pointer-free and fixed-size; each attribute's name, unit
// and range are in one table (Attr.Name, Attr.Scale, Attr.Min, Attr.Max),
// which the decoder, the log codec and the encoders all read. Adding an
// attribute is one line in that table (this package), plus the decoder's
// and encoders' behaviour if it needs more than the table says.
//
// Layers pay for attributes only when a fleet sends them: the log codec
// spends no byte on an update without attributes, and the latest-position
// store keeps each attribute in a column that exists only for chunks of
// trucks that sent it.
//
// # IDs
//
// A truck ID is 1-64 bytes of [A-Za-z0-9_.:-] (ValidID): printable,
// needing no escaping in JSON, URLs or log lines.
package fleet
