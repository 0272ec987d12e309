// Package atinternet delivers hits to AT Internet / Piano Analytics collect
// servers (SPEC §2): it encodes each hit's JSON, sends one request per
// visitor, retries transient failures, and reports each request's outcome so
// the service can settle its records one by one.
package atinternet

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/atrelay/atrelay/pipeline"
)

// Encode writes h.Body: the hit's JSON object {"name":…,"data":{…}}, with
// properties in order. It reuses h.Body's capacity and allocates nothing once
// that is large enough. NaN and infinite decimals are left out. The service
// runs it on each hit once the pipeline's stages are done (relay.Config's
// Encode).
func Encode(h *pipeline.Hit) {
	b := append(h.Body[:0], `{"name":`...)
	b = appendString(b, h.Name)
	b = append(b, `,"data":{`...)
	first := true
	for i := range h.Props {
		p := &h.Props[i]
		if p.Value.Kind == pipeline.KindFloat && (math.IsNaN(p.Value.Float) || math.IsInf(p.Value.Float, 0)) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, p.Key)
		b = append(b, ':')
		switch p.Value.Kind {
		case pipeline.KindString:
			b = appendString(b, p.Value.Str)
		case pipeline.KindInt:
			b = strconv.AppendInt(b, p.Value.Int, 10)
		case pipeline.KindFloat:
			b = strconv.AppendFloat(b, p.Value.Float, 'f', -1, 64)
		case pipeline.KindBool:
			b = strconv.AppendBool(b, p.Value.Bool)
		}
	}
	h.Body = append(b, "}}"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
