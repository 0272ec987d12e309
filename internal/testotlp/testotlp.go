// Package testotlp reads the requests of an OTLP/HTTP exporter in tests: the
// in-test endpoints that check what atrelay exports decode real OTLP
// protobuf, as a collector would.
package testotlp

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/protobuf/proto"
)

// Decode reads r's body (gzip-compressed or not) into msg, e.g. a
// coltracepb.ExportTraceServiceRequest. On error it has answered 400 and
// returns false.
func Decode(w http.ResponseWriter, r *http.Request, msg proto.Message) bool {
	if err := decode(r, msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func decode(r *http.Request, msg proto.Message) error {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, msg)
}
