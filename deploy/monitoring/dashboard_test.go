package monitoring

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// jaegerService is the service the Jaeger links search: atrelay's
// telemetry.service_name by default.
const jaegerService = "atrelay"

// panelQueries are what the dashboard must show, each a pattern one of its
// queries matches.
var panelQueries = []struct{ what, pattern string }{
	{"records consumed", `rate\(atrelay_records_consumed_total\{`},
	{"records settled by outcome", `sum by \(outcome\) \(rate\(atrelay_records_settled_total\{`},
	{"records filtered by reason", `sum by \(reason\) \(rate\(atrelay_records_settled_total\{[^}]*outcome="filtered"`},
	{"records dead-lettered by reason", `sum by \(reason\) \(rate\(atrelay_records_settled_total\{[^}]*outcome="dlq"`},
	{"delivered per integration", `sum by \(integration\) \(rate\(atrelay_delivery_latency_seconds_count\{`},
	{"lag per partition", `by \([^)]*partition[^)]*\) \(atrelay_consumer_lag\{`},
	{"delivery latency p50", `histogram_quantile\(0\.5, sum by \(integration, le\) \(rate\(atrelay_delivery_latency_seconds_bucket\{`},
	{"delivery latency p99", `histogram_quantile\(0\.99, sum by \(integration, le\) \(rate\(atrelay_delivery_latency_seconds_bucket\{`},
	{"requests per integration and status", `sum by \(integration, http_response_status_code\) \(rate\(atrelay_http_client_request_duration_seconds_count\{`},
	{"retries per integration and reason", `sum by \(integration, reason\) \(rate\(atrelay_http_client_retries_total\{`},
	{"lag per group", `sum by \(group\) \(max by \(topic, group, partition\) \(atrelay_consumer_lag\{`},
	{"buffered records per group", `by \([^)]*group[^)]*\) \(atrelay_records_buffered\{`},
	{"records lost to retention", `atrelay_consumer_offset_gap_records_total\{`},
	{"sites paused", `by \(integration, http_response_status_code\) \(atrelay_sites_paused\{`},
	{"sites parking", `by \(integration\) \(atrelay_sites_parking\{`},
	{"commits by result", `sum by \(result\) \(rate\(atrelay_offsets_commits_total\{`},
	{"rebalances by kind", `sum by \(kind\) \(increase\(atrelay_consumer_rebalances_total\{`},
	{"abandoned records by reason", `sum by \(reason\) \(increase\(atrelay_records_abandoned_total\{`},
	{"resident memory", `process_resident_memory_bytes\{`},
	{"GC", `rate\(go_gc_duration_seconds_(count|sum)\{`},
}

// TestDashboard checks the dashboard's model: Prometheus panels on the
// ${datasource} variable, ids unique, panels inside the 24-column grid and
// not overlapping, every variable a query or link uses defined, every
// panel's series filtered by the namespace, job and instance variables,
// every panel of panelQueries there, and links that search traces by
// eventIDAttribute in Tempo (Grafana Explore, TraceQL) and Jaeger.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want a uid, a title and schemaVersion 36 or later", d.UID, d.Title, d.SchemaVersion)
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("variable %s defined twice", v.Name)
		}
		vars[v.Name] = v
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: datasource %+v, want ${datasource}", v.Name, v.Datasource)
		}
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || ds.Query != "prometheus" {
		t.Errorf("variable datasource: %+v, want a Prometheus data source variable", ds)
	}
	for _, n := range []string{"namespace", "job", "instance"} {
		if v := vars[n]; v.Type != "query" || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s: %+v, want a query variable with All as .* (a label Prometheus may not add matches .* empty)", n, v)
		}
	}
	usesVars := func(where, s string) {
		for _, m := range grafanaVariable.FindAllStringSubmatch(s, -1) {
			name := m[1] + m[2]
			if _, ok := vars[name]; !ok && !strings.HasPrefix(name, "__") {
				t.Errorf("%s: variable $%s is not defined", where, name)
			}
		}
	}

	ids := map[int]bool{}
	panels := d.allPanels()
	for i, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, o := range panels[:i] {
			og := o.GridPos
			if g.X < og.X+og.W && og.X < g.X+g.W && g.Y < og.Y+og.H && og.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", o.Title, p.Title)
			}
		}
		usesVars("panel "+p.Title, p.Title+" "+p.Options.Content)
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
			usesVars("panel "+p.Title, tg.Expr)
			e, err := promql.ParseExpr(promQL(tg.Expr))
			if err != nil {
				t.Errorf("panel %q target %s: %v", p.Title, tg.RefID, err)
				continue
			}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				for _, l := range []string{"namespace", "job", "instance"} {
					if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
						return m.Name == l && m.Type == labels.MatchRegexp && m.Value == "grafana_variable"
					}) {
						t.Errorf("panel %q target %s: %s is not filtered by %s=~\"$%s\"", p.Title, tg.RefID, vs, l, l)
					}
				}
				return nil
			})
		}
	}
	links := slices.Clone(d.Links)
	for _, p := range panels {
		links = append(links, p.Links...)
	}
	anchors, _, _ := runbookAnchors(t)
	for _, l := range links {
		usesVars("link "+l.Title, l.Title+" "+l.URL)
		if rest, ok := strings.CutPrefix(l.URL, runbookURL); ok && rest != "" && !anchors[strings.TrimPrefix(rest, "#")] {
			t.Errorf("link %q: %s has no section %s", l.Title, runbookPath, rest)
		}
	}

	var exprs []string
	for _, p := range panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, q := range panelQueries {
		re := regexp.MustCompile(q.pattern)
		if !slices.ContainsFunc(exprs, re.MatchString) {
			t.Errorf("no panel shows %s (a query matching %s)", q.what, q.pattern)
		}
	}

	t.Run("trace links", func(t *testing.T) {
		var tempo, jaeger bool
		for _, l := range links {
			switch {
			case strings.HasPrefix(l.URL, "/explore?"):
				if checkTempoLink(t, l) {
					tempo = true
				}
			case strings.HasPrefix(l.URL, "${jaeger_url}/search?"):
				u, err := url.Parse(strings.TrimPrefix(l.URL, "${jaeger_url}"))
				if err != nil {
					t.Errorf("link %q: %v", l.Title, err)
					continue
				}
				q := u.Query()
				var tags map[string]string
				if err := json.Unmarshal([]byte(q.Get("tags")), &tags); err != nil {
					t.Errorf("link %q: tags %q: %v", l.Title, q.Get("tags"), err)
					continue
				}
				if q.Get("service") == jaegerService && strings.HasPrefix(tags[eventIDAttribute], "${event_id") {
					jaeger = true
				}
			}
		}
		if !tempo {
			t.Errorf("no link searches Tempo for {span.%s = \"${event_id}\"}", eventIDAttribute)
		}
		if !jaeger {
			t.Errorf("no link searches Jaeger (service %s) for the tag %s=${event_id}", jaegerService, eventIDAttribute)
		}
	})
}

// checkTempoLink decodes a Grafana Explore link and reports whether it is
// a TraceQL search by event_id on the ${tracing} data source; a link that
// does not decode is an error.
func checkTempoLink(t *testing.T, l link) bool {
	t.Helper()
	u, err := url.Parse(l.URL)
	if err != nil {
		t.Errorf("link %q: %v", l.Title, err)
		return false
	}
	var panes map[string]struct {
		Datasource string `json:"datasource"`
		Queries    []struct {
			Datasource datasourceRef `json:"datasource"`
			QueryType  string        `json:"queryType"`
			Query      string        `json:"query"`
		} `json:"queries"`
		Range struct{ From, To string } `json:"range"`
	}
	if err := json.Unmarshal([]byte(u.Query().Get("panes")), &panes); err != nil {
		t.Errorf("link %q: panes %q: %v", l.Title, u.Query().Get("panes"), err)
		return false
	}
	byEvent := false
	for _, p := range panes {
		if p.Datasource != "${tracing}" || len(p.Queries) != 1 {
			t.Errorf("link %q: pane %+v, want one query on ${tracing}", l.Title, p)
			continue
		}
		q := p.Queries[0]
		if q.Datasource != (datasourceRef{Type: "tempo", UID: "${tracing}"}) || q.QueryType != "traceql" {
			t.Errorf("link %q: query %+v, want TraceQL on the tempo data source ${tracing}", l.Title, q)
		}
		if strings.HasPrefix(q.Query, "{ span."+eventIDAttribute+` = "${event_id`) {
			byEvent = true
		}
	}
	return byEvent
}
