package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrintsWhatToDeclare(t *testing.T) {
	t.Setenv("KAFKA_PASSWORD", "x")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check", "--config", "../../deploy/atrelay.example.yaml"}, &out, &errOut); err != nil {
		t.Fatalf("check: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"configuration OK",
		"integration my-app (enabled): site 123456, https://logs1412.xiti.com/subscription",
		"SUBSCRIPTION_STARTED             -> subscription.started",
		"TRIAL_STARTED                    -> trial_started",
		"plan_id                          string",
		"event_date                       date",
		"app_name                         string",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "ab_test_variant") {
		t.Error("a dropped property is listed")
	}
}

func TestConfigErrorNamesTheKey(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kafka: {brokers: [\"b:1\"], topic: t, group: g}\nintegrations:\n  - {name: a, app_id: x, site_id: 0, collect_domain: d, events: [TRIAL_STARTED]}\n"), 0o600)
	for _, cmd := range []string{"run", "check"} {
		err := run(context.Background(), []string{cmd, "--config", bad}, new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), "integrations[0].site_id: must be a positive integer") {
			t.Errorf("%s: err = %v", cmd, err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"run"}, {"check", "--nope"}} {
		err := run(context.Background(), args, new(bytes.Buffer), new(bytes.Buffer))
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, nil); err != nil || !strings.HasPrefix(out.String(), "atrelay/") {
		t.Errorf("version: %q %v", out.String(), err)
	}
}
