package pipeline_test

import (
	"testing"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/pipeline"
)

// TestOnReject: an integration's on_reject defaults to pause and reaches
// its Site, where the service reads it; dlq is kept as given.
// Mutations caught: Default not setting on_reject (Validate refuses "");
// Compile not copying it to the Site (dlq reads as "").
func TestOnReject(t *testing.T) {
	cfgs := fixture.Integrations("logs1.xiti.com")
	cfgs[1].OnReject = pipeline.RejectDLQ
	in, err := pipeline.Compile(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	ev := base()
	r, err := in.Route(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Site().OnReject; got != pipeline.RejectPause {
		t.Errorf("%s on_reject = %q, want the default %q", r.Site().Integration, got, pipeline.RejectPause)
	}
	ev.AppID = cfgs[1].AppID
	if r, err = in.Route(&ev); err != nil {
		t.Fatal(err)
	}
	if got := r.Site().OnReject; got != pipeline.RejectDLQ {
		t.Errorf("%s on_reject = %q, want %q", r.Site().Integration, got, pipeline.RejectDLQ)
	}
}
