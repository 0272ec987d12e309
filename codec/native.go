package codec

// The decode helpers of the generated fromNative (event_gen.go), one per
// Kind, and the encode helpers of Native. Each accepts a plain value or a
// one-branch union map, as goavro gives them.

import "time"

// unwrap returns the value of a union branch ({"string": "x"}) or v itself.
func unwrap(v any) any {
	if u, ok := v.(map[string]any); ok && len(u) == 1 {
		for _, x := range u {
			return x
		}
	}
	return v
}

// wrongType names the Go type of the value, as goavro gives it, except
// that bytes are a string read as bytes (writerCodec): DecodeInto has
// rejected a plain codec's bytes before.
func wrongType(field string, v any) error {
	x := unwrap(v)
	if _, ok := x.([]byte); ok {
		x = ""
	}
	return permanent("wrong_type", ErrWrongType, "%s: %T", field, x)
}

// branch returns a union's value when it is of the expected branch: a map
// lookup, much cheaper than ranging over goavro's one-entry map.
func branch(v any, name string) (any, bool) {
	if u, ok := v.(map[string]any); ok {
		x, ok := u[name]
		return x, ok
	}
	return nil, false
}

// str also takes bytes: a codec reads strings as bytes when its writer
// schema has no bytes of its own (writerCodec), and DecodeInto rejects
// bytes in string fields otherwise.
func str(field string, v any) (string, error) {
	if x, ok := branch(v, "bytes"); ok {
		if b, ok := x.([]byte); ok {
			return bytesString(b), nil
		}
	}
	if x, ok := branch(v, "string"); ok {
		if s, ok := x.(string); ok {
			return s, nil
		}
	}
	switch x := unwrap(v).(type) {
	case []byte:
		return bytesString(x), nil
	case string:
		return x, nil
	case nil:
		return "", nil
	default:
		return "", wrongType(field, v)
	}
}

func boolean(field string, v any) (bool, error) {
	switch x := unwrap(v).(type) {
	case bool:
		return x, nil
	case nil:
		return false, nil
	default:
		return false, wrongType(field, v)
	}
}

func integer(field string, v any) (int64, error) {
	switch x := unwrap(v).(type) {
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case nil:
		return 0, nil
	default:
		return 0, wrongType(field, v)
	}
}

func double(field string, v any) (Null[float64], error) {
	if x, ok := branch(v, "double"); ok {
		if f, ok := x.(float64); ok {
			return Some(f), nil
		}
	}
	switch x := unwrap(v).(type) {
	case float64:
		return Some(x), nil
	case float32:
		return Some(float64(x)), nil
	case int32:
		return Some(float64(x)), nil
	case int64:
		return Some(float64(x)), nil
	case nil:
		return Null[float64]{}, nil
	default:
		return Null[float64]{}, wrongType(field, v)
	}
}

// timestamp accepts a timestamp-millis (time.Time from goavro) or a plain
// long of epoch milliseconds, as older writers may have sent.
func timestamp(field string, v any) (Null[time.Time], error) {
	if x, ok := branch(v, "long.timestamp-millis"); ok {
		if t, ok := x.(time.Time); ok {
			return Some(t.UTC()), nil
		}
	}
	switch x := unwrap(v).(type) {
	case time.Time:
		return Some(x.UTC()), nil
	case int64:
		return Some(time.UnixMilli(x).UTC()), nil
	case nil:
		return Null[time.Time]{}, nil
	default:
		return Null[time.Time]{}, wrongType(field, v)
	}
}

func attributes(field string, v any) (map[string]string, error) {
	// A nullable map arrives as the union branch {"map": {...}}; a plain map
	// with one attribute must not be mistaken for one.
	if u, ok := v.(map[string]any); ok && len(u) == 1 {
		if inner, ok := u["map"].(map[string]any); ok {
			v = inner
		}
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make(map[string]string, len(x))
		for k, a := range x {
			switch s := a.(type) {
			case []byte: // as str: rejected by DecodeInto unless a string
				out[k] = bytesString(s)
			case string:
				out[k] = s
			default:
				return nil, wrongType(field+"."+k, a)
			}
		}
		return out, nil
	case nil:
		return nil, nil
	default:
		return nil, wrongType(field, v)
	}
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return map[string]any{"string": s}
}

func optDouble(n Null[float64]) any {
	if !n.Valid {
		return nil
	}
	return map[string]any{"double": n.Value}
}

func optTime(n Null[time.Time]) any {
	if !n.Valid {
		return nil
	}
	return map[string]any{"long.timestamp-millis": n.Value}
}

func attrsNative(a map[string]string) map[string]any {
	m := make(map[string]any, len(a))
	for k, v := range a {
		m[k] = v
	}
	return m
}
