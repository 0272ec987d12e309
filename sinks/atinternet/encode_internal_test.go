package atinternet

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// appendStringByByte is the reference appendString: the plain loop, one
// byte at a time, that the word-at-a-time version must match exactly.
func appendStringByByte(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// TestAppendStringWordBoundaries puts each kind of byte that needs care at
// every position of strings around the 8-byte word, alone and in pairs, and
// compares with the byte-by-byte reference.
//
// Mutations caught (each run once): plainWord without the quote test,
// without the backslash test, without the control test, with the control
// bound at 0x1f, without the high-bit test (é and \xff pass unchecked).
func TestAppendStringWordBoundaries(t *testing.T) {
	specials := []string{`"`, `\`, "\n", "\r", "\t", "\x00", "\x01", "\x1f", " ", "\x7f", "é", "\xff", "\xe2\x82", "€", "\u2028"}
	for n := 0; n <= 24; n++ {
		for p := 0; p < n; p++ {
			for _, c := range specials {
				s := strings.Repeat("a", p) + c + strings.Repeat("z", n-p)
				if got, want := string(appendString(nil, s)), string(appendStringByByte(nil, s)); got != want {
					t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
				}
				for _, d := range specials {
					s2 := s + strings.Repeat("b", p%9) + d
					if got, want := string(appendString(nil, s2)), string(appendStringByByte(nil, s2)); got != want {
						t.Fatalf("appendString(%q) = %s, want %s", s2, got, want)
					}
				}
			}
		}
	}
}

// FuzzAppendString: any string, the same bytes as the reference.
func FuzzAppendString(f *testing.F) {
	f.Add("plain ascii text of some length")
	f.Add("quote\" back\\ nl\n ctl\x01 bad\xff é")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendString(nil, s)), string(appendStringByByte(nil, s)); got != want {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}
