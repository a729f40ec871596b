package ingest

import "strconv"

// UnavailableError is a failure the client should answer by resending later (gRPC UNAVAILABLE): Kafka or Redis did
// not answer, or an earlier copy of a transaction was not confirmed.
type UnavailableError struct{ Message string }

func (e *UnavailableError) Error() string { return e.Message }

// PyG formats a number as Python's f"{value:g}" does (six significant digits, no trailing zeros).
func PyG(value float64) string { return strconv.FormatFloat(value, 'g', 6, 64) }
