package monitoring

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

// The kit's paths, from this directory.
const (
	dashboardPath = "../grafana/atrelay.json"
	rulesPath     = "../prometheus/atrelay-rules.yaml"
	ruleTestsPath = "../prometheus/atrelay-rules.test.yaml"
	runbookPath   = "../RUNBOOK.md"
)

// runbookURL is where the alerts' runbook_url point: RUNBOOK.md on the
// repository's main branch, an anchor per alert.
const runbookURL = "https://github.com/atrelay/atrelay/blob/main/deploy/RUNBOOK.md"

// eventIDAttribute is the span attribute of a record's event_id, which the
// dashboard's trace links search by.
const eventIDAttribute = "atrelay.event_id"

// dashboard is the part of Grafana's dashboard JSON model the checks read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string         `json:"name"`
			Datasource *datasourceRef `json:"datasource"`
			Expr       string         `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Links  []link  `json:"links"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Type       string         `json:"type"`
	Name       string         `json:"name"`
	Query      any            `json:"query"`
	Datasource *datasourceRef `json:"datasource"`
	IncludeAll bool           `json:"includeAll"`
	AllValue   string         `json:"allValue"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Links   []link  `json:"links"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Options struct {
		Content string `json:"content"`
	} `json:"options"`
}

// allPanels returns the panels, those of collapsed rows included.
func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesPath, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// query is one PromQL expression of the kit, or a Grafana label_values()
// variable query, and where it is.
type query struct {
	where  string
	expr   string // PromQL, Grafana's variables replaced
	label  string // for label_values(expr, label): the label asked for
	record string // for a recording rule: the series it records
}

// The Grafana variables an expression may hold: the interval ones stand
// for a duration, the others sit in label values.
var (
	grafanaInterval = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)
	grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::[\w]+)?\}|\$(\w+)`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
)

// promQL turns a Grafana query into PromQL: durations for the interval
// variables, a value for the others. A variable anywhere else than in a
// label value or a range then fails the parse.
func promQL(expr string) string {
	expr = grafanaInterval.ReplaceAllString(expr, "5m")
	return grafanaVariable.ReplaceAllString(expr, "grafana_variable")
}

// dashboardQueries returns every query of the dashboard: the panels'
// targets, the annotations' and the variables'.
func dashboardQueries(t *testing.T, d *dashboard) []query {
	t.Helper()
	var qs []query
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			qs = append(qs, query{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: promQL(tg.Expr)})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			qs = append(qs, query{where: fmt.Sprintf("annotation %q", a.Name), expr: promQL(a.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		s, ok := v.Query.(string)
		if !ok {
			t.Errorf("variable %s: query %v is not a label_values() string", v.Name, v.Query)
			continue
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: promQL(m[1]), label: m[2]})
	}
	return qs
}

// ruleQueries returns the rules' expressions, recording rules first.
func ruleQueries(groups *rulefmt.RuleGroups) (recording []query, alerting []query) {
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recording = append(recording, query{where: "record " + r.Record, expr: r.Expr, record: r.Record})
			} else {
				alerting = append(alerting, query{where: "alert " + r.Alert, expr: r.Expr})
			}
		}
	}
	return recording, alerting
}
