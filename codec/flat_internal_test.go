package codec

import "testing"

// TestFlatRecordShapes: which writer schemas the flat decoder takes — the
// ones whose every field needs no name from elsewhere and whose unions
// are null and one type — and which keep goavro's record codec.
// Mutations caught: flatType accepting any map type (the nested record and
// the enum get a flat decoder: goavro.NewCodec of a lone named type
// succeeds, so only this check stops it); the union test accepting two
// non-null branches.
func TestFlatRecordShapes(t *testing.T) {
	rec := func(fieldType string) string {
		return `{"type":"record","name":"r","fields":[{"name":"a","type":"bytes"},{"name":"f","type":` + fieldType + `}]}`
	}
	for _, tc := range []struct {
		name, schema string
		flat         bool
	}{
		{"primitives", rec(`"long"`), true},
		{"null first", rec(`["null","double"]`), true},
		{"null second", rec(`["double","null"]`), true},
		{"logical type", rec(`{"type":"long","logicalType":"timestamp-millis"}`), true},
		{"nullable logical type", rec(`["null",{"type":"int","logicalType":"date"}]`), true},
		{"map of primitives", rec(`{"type":"map","values":"bytes"}`), true},
		{"nullable array of primitives", rec(`["null",{"type":"array","items":"long"}]`), true},
		{"nested record", rec(`{"type":"record","name":"n","fields":[{"name":"x","type":"long"}]}`), false},
		{"enum", rec(`{"type":"enum","name":"e","symbols":["A","B"]}`), false},
		{"fixed", rec(`{"type":"fixed","name":"x","size":4}`), false},
		{"map of records", rec(`{"type":"map","values":{"type":"record","name":"n","fields":[]}}`), false},
		{"three-branch union", rec(`["null","long","bytes"]`), false},
		{"union without null", rec(`["long","bytes"]`), false},
		{"union of nulls", rec(`["null","null"]`), false},
		{"null field", rec(`"null"`), false},
		{"not a record", `{"type":"map","values":"long"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newFlatRecord(tc.schema) != nil; got != tc.flat {
				t.Errorf("flat decoder: %v, want %v", got, tc.flat)
			}
		})
	}
}
