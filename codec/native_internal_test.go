package codec

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/atrelay/atrelay/schemas"
)

// TestFieldNamesMatchSchema keeps the decoder's field list in step with
// schemas/subscription_event.avsc: a field added there must be decoded here.
func TestFieldNamesMatchSchema(t *testing.T) {
	var s struct {
		Fields []struct {
			Name string `json:"name"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(schemas.SubscriptionEvent()), &s); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range s.Fields {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, fieldNames[:]) {
		t.Fatalf("schema fields %v\ndecoder fields %v", names, fieldNames)
	}
}
