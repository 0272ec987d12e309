package offsets

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Commit metadata: with each commit, atrelay stores in the partition's
// commit metadata the offsets above the committed one that are already
// settled, so that the partition's next owner (another member, or this
// one after a crash) settles them at once instead of sending them again.
// After a crash or a rebalance, only the records settled since the last
// commit are sent twice.
//
// The format is MetadataPrefix followed by comma-separated entries that
// run-length encode the settled offsets from the committed offset up:
// each entry "s" or "s+n" skips s offsets (not settled, s ≥ 0), then takes
// n settled ones (n ≥ 1; "s" alone takes one). With committed offset 100
// and offsets 103-105, 109 and 112-140 settled, the metadata is
// "atrelay1:3+3,3,2+29". Relative, run-length entries keep it short: two
// sites taking turns, one of them down, settle every other offset, which
// costs two bytes per settled record.

// MetadataPrefix starts the commit metadata atrelay writes, and names its
// format's version. Metadata without it was written by another tool
// (franz-go's default is the member id) and is ignored.
const MetadataPrefix = "atrelay1:"

// MetadataBudget bounds the commit metadata atrelay writes. Brokers refuse
// a commit whose metadata is longer than offset.metadata.max.bytes (4096 by
// default) with OFFSET_METADATA_TOO_LARGE; a settled set that does not fit
// is cut, keeping its low end: fewer records are skipped by the next owner,
// and none wrongly.
const MetadataBudget = 4000

// Why DecodeMetadata ignored a commit's metadata.
var (
	// ErrForeignMetadata is metadata not written by atrelay (no
	// MetadataPrefix): another tool's, or franz-go's member id.
	ErrForeignMetadata = errors.New("offsets: commit metadata not written by atrelay")
	// ErrBadMetadata is metadata with atrelay's prefix that does not
	// parse: it is ignored whole.
	ErrBadMetadata = errors.New("offsets: malformed atrelay commit metadata")
)

// EncodeMetadata returns the commit metadata recording the offsets of s at
// and above committed, within budget bytes: when they do not fit, the
// lowest ones that do. It never returns more than budget bytes, nor less
// than MetadataPrefix (budget permitting).
func EncodeMetadata(committed int64, s *Settled, budget int) string {
	return encodeMetadata(committed, s.from(committed), budget)
}

// encodeMetadata encodes runs, increasing, disjoint and at or above
// committed, keeping the entries that fit in budget bytes.
func encodeMetadata(committed int64, runs []span, budget int) string {
	var b strings.Builder
	b.WriteString(MetadataPrefix)
	p := committed
	var entry []byte
	for i, r := range runs {
		entry = entry[:0]
		if i > 0 {
			entry = append(entry, ',')
		}
		entry = strconv.AppendInt(entry, r.first-p, 10)
		if n := r.last - r.first + 1; n > 1 {
			entry = append(entry, '+')
			entry = strconv.AppendInt(entry, n, 10)
		}
		if b.Len()+len(entry) > budget {
			break
		}
		b.Write(entry)
		p = r.last + 1
	}
	if b.Len() > budget {
		return ""
	}
	return b.String()
}

// DecodeMetadata returns the settled offsets a partition's commit metadata
// records above its committed offset (nil when none), or an error wrapping
// ErrForeignMetadata or ErrBadMetadata: such metadata is to be ignored.
// It never panics, whatever md holds.
func DecodeMetadata(committed int64, md string) (*Settled, error) {
	rest, ok := strings.CutPrefix(md, MetadataPrefix)
	if !ok {
		return nil, ErrForeignMetadata
	}
	if committed < 0 {
		return nil, fmt.Errorf("%w: no committed offset %d", ErrBadMetadata, committed)
	}
	if rest == "" {
		return nil, nil
	}
	var s Settled
	p := committed
	for i, entry := range strings.Split(rest, ",") {
		skipText, takeText, hasTake := strings.Cut(entry, "+")
		skip, err := parseCount(skipText)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %w", ErrBadMetadata, i, entry, err)
		}
		take := int64(1)
		if hasTake {
			if take, err = parseCount(takeText); err != nil || take == 0 {
				return nil, fmt.Errorf("%w: entry %d %q: the count must be a positive integer", ErrBadMetadata, i, entry)
			}
		}
		// Offsets stay below math.MaxInt64, so that p never overflows.
		const limit = math.MaxInt64 - 1
		if skip > limit-p || take-1 > limit-(p+skip) {
			return nil, fmt.Errorf("%w: entry %d %q: past the largest offset", ErrBadMetadata, i, entry)
		}
		first := p + skip
		last := first + take - 1
		if n := len(s.ranges); n > 0 && first == s.ranges[n-1].last+1 {
			s.ranges[n-1].last = last // "s+0" cannot occur, but "0" can: join
		} else {
			s.ranges = append(s.ranges, span{first, last})
		}
		p = last + 1
	}
	return &s, nil
}

// parseCount parses a non-negative decimal integer: digits only, no sign.
func parseCount(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal digit", c)
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, errors.New("number too large")
		}
		n = n*10 + d
	}
	return n, nil
}

// CutMetadata returns md, metadata EncodeMetadata wrote, cut to at most
// budget bytes at an entry boundary, keeping the low end; "" when not even
// MetadataPrefix fits. It is how a commit refused for its metadata's size
// (a broker whose offset.metadata.max.bytes is below MetadataBudget) is
// sent again with less.
func CutMetadata(md string, budget int) string {
	if len(md) <= budget {
		return md
	}
	if budget < len(MetadataPrefix) {
		return ""
	}
	// md[budget] is a comma when md[:budget] ends with a whole entry.
	if i := strings.LastIndexByte(md[:budget+1], ','); i >= len(MetadataPrefix) {
		return md[:i]
	}
	return MetadataPrefix
}

// Count returns how many offsets s holds (itself, without what it merged).
func (s *Settled) Count() int64 {
	if s == nil {
		return 0
	}
	var n int64
	for _, r := range s.ranges {
		n += r.last - r.first + 1
	}
	return n
}
