// Package codec turns Kafka record values into typed Purchasely events:
// Confluent, single-object and raw Avro framings, writer schemas from a
// Confluent-compatible registry, and decoding by field name so that older and
// newer writer schemas decode alike.
//
// Errors come in two classes, told apart with errors.As: a *PermanentError
// (the record can never decode: it belongs in the dead-letter topic) and a
// *TransientError (the registry is unreachable: wait and try again).
package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/singleflight"

	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/schemas"
)

// Framing says how a record value wraps its Avro bytes.
type Framing string

// The framings of SPEC §3.
const (
	FramingAuto         Framing = "auto"
	FramingConfluent    Framing = "confluent"
	FramingSingleObject Framing = "single-object"
	FramingRaw          Framing = "raw"
)

// Errors matched with errors.Is; each is wrapped in a *PermanentError.
var (
	ErrCorrupt       = errors.New("corrupt avro")
	ErrBadFraming    = errors.New("unexpected framing")
	ErrUnknownSchema = errors.New("unknown writer schema")
	ErrMissingField  = errors.New("missing required field")
	ErrWrongType     = errors.New("field has the wrong type")
	// ErrTooLarge is a record value above the decoder's size limit
	// (MaxRecordBytes, codec.max_record_bytes): it is refused unread.
	ErrTooLarge = errors.New("record too large")
)

// PermanentError is a record that can never decode. Reason is a short label
// for metrics and the dead-letter headers.
type PermanentError struct {
	reason string
	err    error
}

func (e *PermanentError) Error() string { return e.err.Error() }

// Unwrap returns the cause, one of the Err* sentinels where one applies.
func (e *PermanentError) Unwrap() error { return e.err }

// Reason returns the failure's label: corrupt, bad_framing, unknown_schema,
// missing_field, wrong_type or too_large.
func (e *PermanentError) Reason() string { return e.reason }

// TransientError is a failure that waiting fixes: the registry is down,
// answers 5xx or times out. The record must not be dead-lettered.
type TransientError struct {
	Err error
}

func (e *TransientError) Error() string { return "transient: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *TransientError) Unwrap() error { return e.Err }

func permanent(reason string, sentinel error, format string, args ...any) error {
	return &PermanentError{reason: reason, err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

// maxBlockCount bounds how many map or array items one Avro block may claim.
// goavro sizes its maps by the claimed count before reading a single item, so
// its default (2^31) lets a few hostile bytes allocate gigabytes.
const maxBlockCount = 1 << 16

// Decoder decodes record values. It is safe for concurrent use; writer
// schemas are fetched once per id and cached for the Decoder's life.
type Decoder struct {
	framing Framing
	reg     *sr.Client
	raw     *writerCodec
	// maxBytes is the largest value decoded; a larger one is refused
	// before a byte of it is read.
	maxBytes int

	mu     sync.RWMutex
	byID   map[int]*writerCodec
	byFP   map[uint64]*writerCodec
	flight singleflight.Group
}

// Option changes a Decoder that New builds.
type Option func(*Decoder)

// MaxRecordBytes sets the largest record value the decoder decodes, in
// bytes (DefaultMaxRecordBytes unless set); it must be positive. A larger
// value fails with a *PermanentError of reason too_large (ErrTooLarge)
// without being read: neither its framing nor its schema id is looked at,
// so no registry lookup is made for it.
func MaxRecordBytes(n int) Option { return func(d *Decoder) { d.maxBytes = n } }

// New returns a decoder for a framing. reg may be nil when no record is
// Confluent-framed; rawSchema is the Avro schema of raw records (the embedded
// SubscriptionEvent schema when empty).
//
// New lowers goavro's process-wide MaxBlockCount to 65536 items per block if
// it is higher: no subscription event comes near that, and it stops hostile
// input from allocating gigabytes.
func New(framing Framing, reg *sr.Client, rawSchema string, opts ...Option) (*Decoder, error) {
	switch framing {
	case FramingAuto, FramingConfluent, FramingSingleObject, FramingRaw:
	default:
		return nil, fmt.Errorf("codec: unknown framing %q", framing)
	}
	d := &Decoder{framing: framing, reg: reg, maxBytes: DefaultMaxRecordBytes, byID: map[int]*writerCodec{}, byFP: map[uint64]*writerCodec{}}
	for _, o := range opts {
		o(d)
	}
	if d.maxBytes <= 0 {
		return nil, fmt.Errorf("codec: max record bytes must be positive, not %d", d.maxBytes)
	}
	if framing == FramingConfluent && reg == nil {
		return nil, errors.New("codec: confluent framing needs a schema registry")
	}
	if goavro.MaxBlockCount > maxBlockCount {
		goavro.MaxBlockCount = maxBlockCount
	}
	if rawSchema == "" {
		rawSchema = schemas.SubscriptionEvent()
	}
	raw, err := newWriterCodec(rawSchema)
	if err != nil {
		return nil, fmt.Errorf("codec: raw schema: %w", err)
	}
	d.raw = raw
	d.byFP[raw.rabin] = raw
	// Every embedded schema can be a single-object writer schema.
	files, _ := schemas.FS.ReadDir(".")
	for _, f := range files {
		text, err := schemas.FS.ReadFile(f.Name())
		if err != nil {
			continue
		}
		if c, err := newWriterCodec(string(text)); err == nil {
			d.byFP[c.rabin] = c
		}
	}
	return d, nil
}

// FromConfig builds the decoder of the configuration's codec section: the
// registry client when a URL is set, and the raw schema read from
// cfg.RawSchema — or, when that file does not exist but names an embedded
// schema, the embedded copy, so the default configuration works from any
// directory.
func FromConfig(cfg Config) (*Decoder, error) {
	var reg *sr.Client
	if cfg.SchemaRegistry.URL != "" {
		var err error
		if reg, err = RegistryClient(cfg.SchemaRegistry, sr.HTTPClient(&http.Client{Timeout: 10 * time.Second})); err != nil {
			return nil, err
		}
	}
	var raw string
	if cfg.RawSchema != "" {
		b, err := os.ReadFile(cfg.RawSchema)
		switch {
		case err == nil:
			raw = string(b)
		case errors.Is(err, os.ErrNotExist):
			eb, eerr := schemas.FS.ReadFile(filepath.Base(cfg.RawSchema))
			if eerr != nil {
				return nil, fmt.Errorf("codec.raw_schema: %w", err)
			}
			raw = string(eb)
		default:
			return nil, fmt.Errorf("codec.raw_schema: %w", err)
		}
	}
	framing := Framing(cfg.Framing)
	if framing == "" {
		framing = FramingAuto
	}
	var opts []Option
	if cfg.MaxRecordBytes != nil {
		opts = append(opts, MaxRecordBytes(*cfg.MaxRecordBytes))
	}
	return New(framing, reg, raw, opts...)
}

// RegistryClient returns a client for the registry c describes, with opts
// added. Credentials written into the URL (http://user:pw@host) are taken
// out of it and sent as basic auth instead — unless c.Username is set, which
// wins, as it does in net/http — so that the client, the errors it returns
// (which quote the request URL) and its logs never hold the password.
func RegistryClient(c SchemaRegistry, opts ...sr.ClientOpt) (*sr.Client, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Parse quotes the URL, and parts of it, in its error.
		return nil, fmt.Errorf("codec.schema_registry.url: %q is not a valid URL", redact.URL(c.URL))
	}
	user := u.User
	u.User = nil
	all := []sr.ClientOpt{sr.URLs(u.String())}
	switch {
	case c.Username != "":
		all = append(all, sr.BasicAuth(c.Username, c.Password.Reveal()))
	case user != nil:
		pw, _ := user.Password()
		all = append(all, sr.BasicAuth(user.Username(), pw))
	}
	cl, err := sr.NewClient(append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("codec.schema_registry.url: %w", redact.Error(err))
	}
	return cl, nil
}

// Decode decodes a record value into a new Event.
func (d *Decoder) Decode(ctx context.Context, value []byte) (*Event, error) {
	ev := new(Event)
	if err := d.DecodeInto(ctx, value, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// DecodeInto decodes a record value into ev, overwriting every field, so the
// caller can reuse one Event per record slot. A value above the decoder's
// MaxRecordBytes fails with reason too_large before anything else, ev
// untouched.
//
// The event never points into value: the caller may reuse it at once. Its
// strings (and its attributes' values) share one buffer per decode, a copy
// of the value; whatever keeps one of them past the record — a batched
// hit's visitor id — should keep strings.Clone of it, or it keeps that
// whole copy alive. EventID is the exception, its own copy: spans and logs
// keep it.
func (d *Decoder) DecodeInto(ctx context.Context, value []byte, ev *Event) error {
	return d.decodeInto(ctx, value, ev, false)
}

// DecodeIntoShared is DecodeInto for a caller that owns value and keeps it
// unchanged for as long as it uses ev: the event's strings may point into
// value itself, so the copy DecodeInto makes is not made. The relay holds
// each record's own copy of its value until the record is settled, long
// after its event is encoded; a second copy per record would be work done
// twice. EventID is still its own copy.
func (d *Decoder) DecodeIntoShared(ctx context.Context, value []byte, ev *Event) error {
	return d.decodeInto(ctx, value, ev, true)
}

// decodeInto is DecodeInto, or DecodeIntoShared when shared.
func (d *Decoder) decodeInto(ctx context.Context, value []byte, ev *Event, shared bool) error {
	if len(value) > d.maxBytes {
		// Only the length is looked at: the Avro reader never sees the
		// value, and its error (a DLQ header) does not quote it.
		return permanent("too_large", ErrTooLarge, "record value is %d bytes, above codec.max_record_bytes (%d)", len(value), d.maxBytes)
	}
	wc, body, err := d.writer(ctx, value)
	if err != nil {
		return err
	}
	if wc.stringsAsBytes && !shared {
		// The one copy the event's strings point into (see writerCodec).
		body = append([]byte(nil), body...)
	}
	if wc.flat != nil {
		err = wc.flat.decode(body, ev)
	} else {
		err = wc.decodeRecord(body, ev)
	}
	if err != nil {
		return err
	}
	if wc.stringsAsBytes {
		// The id outlives the record on its span, in the tracer's export
		// queue: it must not keep the whole copy of the value alive.
		ev.EventID = strings.Clone(ev.EventID)
	}
	return nil
}

// decodeRecord fills ev from body through goavro's record codec: the
// writer schemas that are not flat records (flat.go).
func (wc *writerCodec) decodeRecord(body []byte, ev *Event) error {
	native, rest, err := wc.codec.NativeFromBinary(body)
	if err != nil {
		return permanent("corrupt", ErrCorrupt, "%v", err)
	}
	if len(rest) != 0 {
		return permanent("corrupt", ErrCorrupt, "%d bytes after the record", len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return permanent("wrong_type", ErrWrongType, "writer schema is not a record")
	}
	if !wc.stringsAsBytes {
		if err := rejectBytes(m); err != nil {
			return err
		}
	}
	return fromNative(m, ev)
}

// writer finds the writer schema of a value and returns the Avro body.
func (d *Decoder) writer(ctx context.Context, v []byte) (*writerCodec, []byte, error) {
	framing := d.framing
	if framing == FramingAuto {
		switch {
		case len(v) >= 5 && v[0] == 0:
			framing = FramingConfluent
		case len(v) >= 10 && v[0] == 0xC3 && v[1] == 0x01:
			framing = FramingSingleObject
		default:
			framing = FramingRaw
		}
	}
	switch framing {
	case FramingConfluent:
		if len(v) < 5 || v[0] != 0 {
			return nil, nil, permanent("bad_framing", ErrBadFraming, "not a confluent record (magic byte 0 and a 4-byte schema id)")
		}
		if d.reg == nil {
			return nil, nil, permanent("unknown_schema", ErrUnknownSchema, "confluent record but no schema registry is configured")
		}
		c, err := d.byRegistryID(ctx, int(binary.BigEndian.Uint32(v[1:5])))
		return c, v[5:], err
	case FramingSingleObject:
		if len(v) < 10 || v[0] != 0xC3 || v[1] != 0x01 {
			return nil, nil, permanent("bad_framing", ErrBadFraming, "not a single-object record (C3 01 and an 8-byte fingerprint)")
		}
		fp := binary.LittleEndian.Uint64(v[2:10])
		d.mu.RLock()
		c := d.byFP[fp]
		d.mu.RUnlock()
		if c == nil {
			return nil, nil, permanent("unknown_schema", ErrUnknownSchema, "single-object fingerprint %016x", fp)
		}
		return c, v[10:], nil
	default:
		return d.raw, v, nil
	}
}

func (d *Decoder) byRegistryID(ctx context.Context, id int) (*writerCodec, error) {
	d.mu.RLock()
	c := d.byID[id]
	d.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	v, err, _ := d.flight.Do(strconv.Itoa(id), func() (any, error) {
		s, err := d.reg.SchemaByID(ctx, id)
		if err != nil {
			// sr's errors quote the request URL: keep any userinfo out of
			// logs and dead-letter headers, whoever built the client.
			err = redact.Error(err)
			var re *sr.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
				return nil, permanent("unknown_schema", ErrUnknownSchema, "confluent schema id %d: registry: %v", id, err)
			}
			return nil, &TransientError{Err: fmt.Errorf("confluent schema id %d: registry: %w", id, err)}
		}
		if s.Type != sr.TypeAvro {
			return nil, permanent("unknown_schema", ErrUnknownSchema, "confluent schema id %d is %s, not avro", id, s.Type)
		}
		c, err := newWriterCodec(s.Schema)
		if err != nil {
			return nil, permanent("unknown_schema", ErrUnknownSchema, "confluent schema id %d: %v", id, err)
		}
		d.mu.Lock()
		d.byID[id] = c
		d.byFP[c.rabin] = c
		d.mu.Unlock()
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*writerCodec), nil
}
