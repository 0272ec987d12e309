package fielderr_test

import (
	"errors"
	"io"
	"testing"

	"github.com/atrelay/atrelay/internal/fielderr"
)

func TestPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string
		err  error
		want string
	}{
		{"nil stays nil", "kafka", nil, ""},
		{"key under section", "kafka", fielderr.New("topic", "is required"), "kafka.topic: is required"},
		{"list element", "integrations", fielderr.New("[1].site_id", "bad"), "integrations[1].site_id: bad"},
		{"section itself", "delivery", fielderr.New("", "bad"), "delivery: bad"},
		{"joined errors each get the path", "codec",
			errors.Join(fielderr.New("framing", "a"), errors.Join(fielderr.New("schema_registry.url", "b"))),
			"codec.framing: a\ncodec.schema_registry.url: b"},
		{"other errors are wrapped", "kafka", io.EOF, "kafka: EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fielderr.Prefix(tc.path, tc.err)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("Prefix = %v, want nil", got)
				}
				return
			}
			if got == nil || got.Error() != tc.want {
				t.Fatalf("Prefix = %v, want %q", got, tc.want)
			}
		})
	}
	var fe *fielderr.Error
	if err := fielderr.Prefix("a", fielderr.New("b", "c")); !errors.As(err, &fe) || fe.Path != "a.b" {
		t.Fatalf("Prefix does not keep an *Error: %#v", err)
	}
	if err := fielderr.Prefix("a", io.EOF); !errors.Is(err, io.EOF) {
		t.Fatal("Prefix does not wrap a plain error with %w")
	}
}
