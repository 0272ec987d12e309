package monitoring

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"
)

// severities are the values an alert's severity label may take.
var severities = []string{"critical", "warning", "info"}

// TestRules parses the rules with Prometheus' own rulefmt (strictly: an
// unknown key is an error; every expression through the PromQL parser,
// every annotation template through text/template), and checks each alert
// has a severity, a summary, a description and a runbook_url whose section
// exists in RUNBOOK.md, named after the alert; and that RUNBOOK.md has no
// alert section without its alert, nor a link to a section it lacks.
func TestRules(t *testing.T) {
	groups := loadRules(t)
	anchors, sections, links := runbookAnchors(t)
	alerts := map[string]bool{} // by anchor
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if _, err := promql.ParseExpr(r.Expr); err != nil {
				t.Errorf("%s%s: %v", r.Record, r.Alert, err)
			}
			if r.Alert == "" {
				if !strings.Contains(r.Record, ":") {
					t.Errorf("record %s: a recorded series is named level:metric:operations", r.Record)
				}
				continue
			}
			alerts[strings.ToLower(r.Alert)] = true
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			want := runbookURL + "#" + strings.ToLower(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				t.Errorf("alert %s: runbook_url %s, want %s", r.Alert, got, want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("alert %s: %s has no section %q (### %s)", r.Alert, runbookPath, strings.ToLower(r.Alert), r.Alert)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("no alert")
	}
	for _, a := range sections {
		if !alerts[a] {
			t.Errorf("%s: section #%s under \"## Alerts\" has no alert in %s", runbookPath, a, rulesPath)
		}
	}
	for _, l := range links {
		if !anchors[l] {
			t.Errorf("%s: link to #%s, which is no section", runbookPath, l)
		}
	}
}

// runbookAnchors returns the anchors GitHub gives RUNBOOK.md's headings,
// those of the sections under "## Alerts" (one an alert), and the anchors
// its own links point at.
func runbookAnchors(t *testing.T) (anchors map[string]bool, alertSections, links []string) {
	t.Helper()
	b, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	anchors = map[string]bool{}
	inCode, inAlerts := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			text := strings.TrimLeft(h, "#")
			level := len(h) - len(text) + 1
			slug := githubSlug(text)
			for n := 1; anchors[slug]; n++ {
				slug = fmt.Sprintf("%s-%d", githubSlug(text), n)
			}
			anchors[slug] = true
			if level == 2 {
				inAlerts = strings.TrimSpace(text) == "Alerts"
			} else if level == 3 && inAlerts {
				alertSections = append(alertSections, slug)
			}
		}
		for _, m := range localLink.FindAllStringSubmatch(line, -1) {
			links = append(links, m[1])
		}
	}
	return anchors, alertSections, links
}

var localLink = regexp.MustCompile(`\]\(#([^)]+)\)`)

// githubSlug is the anchor GitHub makes of a heading: lower case, letters,
// digits, '-' and '_' kept, spaces made '-', everything else dropped.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// ruleTests is the part of promtool's test file the checks read.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestEveryRuleTested: each alert has a promtool test in which it fires
// and one in which it does not; each recording rule, a test of its series.
func TestEveryRuleTested(t *testing.T) {
	b, err := os.ReadFile(ruleTestsPath)
	if err != nil {
		t.Fatal(err)
	}
	var tests ruleTests
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tests.RuleFiles, []string{filepath.Base(rulesPath)}) {
		t.Errorf("rule_files %v, want [%s]", tests.RuleFiles, filepath.Base(rulesPath))
	}
	fires, quiet, recorded := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, tg := range tests.Tests {
		for _, a := range tg.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
		for _, e := range tg.PromQLExprTest {
			recorded[e.Expr] = true
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			switch {
			case r.Record != "" && !recorded[r.Record]:
				t.Errorf("record %s: no promql_expr_test of it in %s", r.Record, ruleTestsPath)
			case r.Alert != "" && !fires[r.Alert]:
				t.Errorf("alert %s: no test in %s where it fires", r.Alert, ruleTestsPath)
			case r.Alert != "" && !quiet[r.Alert]:
				t.Errorf("alert %s: no test in %s where it stays quiet (exp_alerts: [])", r.Alert, ruleTestsPath)
			}
		}
	}
}

// TestPromtool runs `promtool check rules` and `promtool test rules` on the
// kit's files, with the promtool of the Prometheus release in go.mod.
func TestPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "--lint=all", "--lint-fatal", rulesPath},
		{"test", "rules", ruleTestsPath},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// broader are, per alert, mutations that make it fire where it must not:
// each replaces old by new, once, in the alert's expression. Each alert
// has at least one.
var broader = []struct{ alert, name, old, new string }{
	{"AtrelayConsumerLagGrowing", "lag not required to grow", "[15m:1m]) > 0", "[15m:1m]) >= 0"},
	{"AtrelayConsumerLagGrowing", "no lag threshold", "> 10000", "> 0"},
	{"AtrelayConsumerLagGrowing", "the parking group counted", `{group!~".+[.]park"}`, ""},
	{"AtrelayNotDelivering", "deliveries not counted", `outcome="delivered"`, `outcome="none"`},
	{"AtrelayRecordsDeadLettered", "reasons at 0 counted", `[10m])) > 0`, `[10m])) >= 0`},
	{"AtrelayRecordsDeadLettered", "a new series not seen", "offset 10m", "offset 0m"},
	{"AtrelayCollectRetriesSustained", "integrations without retries counted", "[5m])) > 0", "[5m])) >= 0"},
	{"AtrelayOffsetCommitsFailing", "successful commits counted", `{result="error"}`, `{result=~"error|ok"}`},
	{"AtrelayDeadLetterWritesFailing", "reasons at 0 counted", "[5m])) > 0", "[5m])) >= 0"},
	{"AtrelayOffsetGap", "partitions without a gap counted", ") > 0", ") >= 0"},
	{"AtrelayOffsetGap", "a series created above 0 not seen", "offset 1h", "offset 0m"},
	{"AtrelaySitePaused", "sites not paused counted", "(atrelay_sites_paused) > 0", "(atrelay_sites_paused) >= 0"},
	{"AtrelaySiteParking", "sites not parking counted", "(atrelay_sites_parking) > 0", "(atrelay_sites_parking) >= 0"},
	{"AtrelayPodNotReady", "every pod", `, pod=~"atrelay-.*"`, ""},
	{"AtrelayTargetDown", "every target", `{job=~".*atrelay.*"}`, ""},
	{"AtrelayAbsent", "absent while up", "== 1)", "== 2)"},
}

// TestRuleTestsCatchBrokenAlerts breaks each alert in turn, in a copy of
// the rules, and runs promtool's tests on that copy: they must fail on the
// broken alert when it can never fire (its expression `unless on()
// vector(1)`), when it fires at once (its `for` dropped), and for each
// mutation of broader.
func TestRuleTestsCatchBrokenAlerts(t *testing.T) {
	bin := promtool(t)
	groups := loadRules(t)
	tests, err := os.ReadFile(ruleTestsPath)
	if err != nil {
		t.Fatal(err)
	}
	type mutation struct {
		name   string
		mutate func(r *rulefmt.Rule) error
	}
	// The copy is written by marshalling what rulefmt read: unchanged, it
	// passes, so that a failure below is the mutation's.
	if out, err := runRuleTests(t, bin, groups, tests); err != nil {
		t.Fatalf("promtool's tests fail on the rules as rulefmt read and wrote them: %v\n%s", err, out)
	}
	for gi, g := range groups.Groups {
		for ri, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			ms := []mutation{{"never fires", func(r *rulefmt.Rule) error {
				r.Expr = "(" + r.Expr + ") unless on() vector(1)"
				return nil
			}}}
			if r.For != 0 {
				ms = append(ms, mutation{"without its for", func(r *rulefmt.Rule) error {
					r.For = 0
					return nil
				}})
			}
			broadened := false
			for _, b := range broader {
				if b.alert != r.Alert {
					continue
				}
				broadened = true
				ms = append(ms, mutation{b.name, func(r *rulefmt.Rule) error {
					if n := strings.Count(r.Expr, b.old); n != 1 {
						return fmt.Errorf("mutation: %q occurs %d times in the expression, want once", b.old, n)
					}
					r.Expr = strings.Replace(r.Expr, b.old, b.new, 1)
					return nil
				}})
			}
			if !broadened {
				t.Errorf("alert %s: no mutation in broader", r.Alert)
			}
			for _, m := range ms {
				t.Run(r.Alert+"/"+m.name, func(t *testing.T) {
					mutant := *groups
					mutant.Groups = slices.Clone(groups.Groups)
					mutant.Groups[gi].Rules = slices.Clone(g.Rules)
					if err := m.mutate(&mutant.Groups[gi].Rules[ri]); err != nil {
						t.Fatal(err)
					}
					out, err := runRuleTests(t, bin, &mutant, tests)
					if err == nil {
						t.Errorf("promtool's tests pass with %s broken (%s):\n%s", r.Alert, m.name, out)
					} else if !strings.Contains(string(out), "alertname: "+r.Alert+",") {
						t.Errorf("promtool's tests fail, but not on %s:\n%s", r.Alert, out)
					}
				})
			}
		}
	}
}

// runRuleTests writes groups and the rule tests into a directory of their
// own and runs promtool's tests there.
func runRuleTests(t *testing.T, bin string, groups *rulefmt.RuleGroups, tests []byte) ([]byte, error) {
	t.Helper()
	rules, err := yaml.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{filepath.Base(rulesPath): rules, filepath.Base(ruleTestsPath): tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return exec.Command(bin, "test", "rules", filepath.Join(dir, filepath.Base(ruleTestsPath))).CombinedOutput()
}

var (
	promtoolOnce sync.Once
	promtoolBin  string
	promtoolErr  error
)

// promtool returns the path of a promtool built from the Prometheus release
// this module requires (go.mod's tool directive pins it and its
// dependencies), into the user's cache directory: `go build` relinks it
// only when it is out of date. remove_all_sd leaves out the service
// discovery plugins, which promtool's rule commands do not use and which
// take most of the build.
func promtool(t *testing.T) string {
	t.Helper()
	promtoolOnce.Do(func() {
		version := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "github.com/prometheus/prometheus" {
					version = d.Version
				}
			}
		}
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		promtoolBin = filepath.Join(dir, "atrelay", "promtool-"+version)
		if err := os.MkdirAll(filepath.Dir(promtoolBin), 0o755); err != nil {
			promtoolErr = err
			return
		}
		// The go command of the toolchain running the tests, else the PATH's.
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); os.Getenv("GOROOT") == "" || err != nil {
			if goBin, err = exec.LookPath("go"); err != nil {
				promtoolErr = fmt.Errorf("no go command to build promtool: %w", err)
				return
			}
		}
		cmd := exec.Command(goBin, "build", "-tags", "remove_all_sd", "-o", promtoolBin, "github.com/prometheus/prometheus/cmd/promtool")
		if out, err := cmd.CombinedOutput(); err != nil {
			promtoolErr = fmt.Errorf("go build promtool: %v\n%s", err, out)
		}
	})
	if promtoolErr != nil {
		t.Fatal(promtoolErr)
	}
	return promtoolBin
}
