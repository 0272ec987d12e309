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
// characters escaped, invalid UTF-8 replaced by U+FFFD. Runs of eight plain
// ASCII bytes are checked a word at a time: most of a hit's text is
// identifiers, dates and names with nothing to escape, and this loop was
// 7% of the service's CPU on a replay when it went byte by byte.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plainWord(s[i:i+8]) {
			i += 8
		}
		if i == len(s) {
			break
		}
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

// plainWord reports whether none of the 8 bytes of w needs escaping or a
// UTF-8 check: no control character, quote, backslash or byte >= 0x80. It
// uses the classic "has a byte less than n" and "has a zero byte" word
// tests: each is non-zero exactly when some byte matches (a borrow can only
// flag a byte above one that truly matches).
func plainWord(w string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
	ctl := (x - lo*0x20) &^ x
	q := x ^ (lo * '"')
	q = (q - lo) &^ q
	bs := x ^ (lo * '\\')
	bs = (bs - lo) &^ bs
	return (ctl|q|bs|x)&hi == 0
}
