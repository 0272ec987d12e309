package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/testkafka"
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

func TestSendTest(t *testing.T) {
	collector := sandbox.New()
	srv := httptest.NewServer(collector)
	defer srv.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(`
kafka: {brokers: ["b:1"], topic: t, group: g}
integrations:
  - {name: app, app_id: com.example.app, site_id: 42, collect_domain: "`+srv.URL+`", events: [TRIAL_STARTED],
     event_names: {TRIAL_STARTED: trial.started}, idclient_from: ["attribute:custom_id"]}
`), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"send-test", "--config", cfgPath, "--integration", "app"}, &out, new(bytes.Buffer)); err != nil {
		t.Fatalf("send-test: %v\n%s", err, out.String())
	}
	hits := collector.Hits()
	if len(hits) != 1 || hits[0].Site != 42 || hits[0].Name != "trial.started" || hits[0].IDClient != "atrelay-send-test" ||
		!strings.HasPrefix(hits[0].Data["event_id"].(string), "atrelay-send-test-") {
		t.Fatalf("collector got %+v", hits)
	}
	if !strings.Contains(out.String(), "POST "+srv.URL+"/event?s=42&idclient=atrelay-send-test") || !strings.Contains(out.String(), "delivered") {
		t.Fatalf("output:\n%s", out.String())
	}
	err := run(context.Background(), []string{"send-test", "--config", cfgPath, "--integration", "nope"}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), `no integration named "nope"`) {
		t.Fatalf("unknown integration: %v", err)
	}
}

// TestCheckConnectHidesRegistryCredentials: with credentials in
// codec.schema_registry.url (issue 9), `check --connect` names the registry
// but prints neither the user nor the password, whether the registry
// answers, fails or is down — and the credentials still authenticate.
// The output is redacted in two layers, so each mutation below was tried
// with the other layer removed too: printing the label with u instead of
// redact.URL(u) (and not redacting what in report) fails every row;
// reporting err instead of redact.Error(err) (with codec.RegistryClient
// leaving the userinfo in the URL) fails "down".
func TestCheckConnectHidesRegistryCredentials(t *testing.T) {
	const password = "s3cr3t-pw"
	kafka := testkafka.New(t)
	topic := kafka.Name(t, "check")
	kafka.CreateTopic(t, topic, 1)
	kafka.CreateTopic(t, topic+".dlq", 1)
	collector := httptest.NewServer(sandbox.New())
	t.Cleanup(collector.Close)

	good := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+password))))
	t.Cleanup(good.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error_code":50001,"message":"internal error"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct {
		name, registry, want string
	}{
		{"answers", good.URL(), "ok   schema registry "},
		{"500", failing.URL, "FAIL schema registry "},
		{"down", down.URL, "FAIL schema registry "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withCreds := strings.Replace(tt.registry, "http://", "http://svc:"+password+"@", 1)
			cfgPath := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(cfgPath, []byte(`
kafka: {brokers: ["`+strings.Join(kafka.Brokers(), `","`)+`"], topic: "`+topic+`", group: g, dlq_topic: "`+topic+`.dlq"}
codec: {schema_registry: {url: "`+withCreds+`"}}
integrations:
  - {name: app, app_id: com.example.app, site_id: 42, collect_domain: "`+collector.URL+`", events: [TRIAL_STARTED]}
`), 0o600)
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"check", "--connect", "--config", cfgPath}, &out, &errOut)
			all := out.String() + errOut.String()
			if err != nil {
				all += err.Error()
			}
			if strings.Contains(all, password) || strings.Contains(all, "svc:") {
				t.Fatalf("credentials in the output:\n%s", all)
			}
			want := tt.want + strings.Replace(tt.registry, "http://", "http://REDACTED@", 1)
			if !strings.Contains(out.String(), want) {
				t.Fatalf("output lacks %q:\n%s", want, all)
			}
			if (err == nil) != strings.HasPrefix(tt.want, "ok") {
				t.Fatalf("err = %v\n%s", err, all)
			}
		})
	}
}
