package monitoring

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promql parses expressions as Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

// catalog is what a /metrics scrape holds: per series name (a histogram's
// _bucket, _sum and _count apart), its label names and the values each
// took.
type catalog map[string]map[string]map[string]bool

// parseExposition reads a text exposition with Prometheus' own parser.
func parseExposition(r io.Reader) (catalog, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	c := catalog{}
	add := func(name string, m *dto.Metric, extra ...string) {
		ls := c[name]
		if ls == nil {
			ls = map[string]map[string]bool{}
			c[name] = ls
		}
		set := func(k, v string) {
			if ls[k] == nil {
				ls[k] = map[string]bool{}
			}
			ls[k][v] = true
		}
		for _, l := range m.GetLabel() {
			set(l.GetName(), l.GetValue())
		}
		for i := 0; i+1 < len(extra); i += 2 {
			set(extra[i], extra[i+1])
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.GetHistogram().GetBucket() {
					add(name+"_bucket", m, "le", model.FloatString(b.GetUpperBound()).String())
				}
				add(name+"_bucket", m, "le", "+Inf")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				for _, q := range m.GetSummary().GetQuantile() {
					add(name, m, "quantile", model.FloatString(q.GetQuantile()).String())
				}
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return c, nil
}

// targetLabels are the labels Prometheus gives every series of a scraped
// target, which /metrics does not carry: job and instance always, and with
// the kit's PodMonitor (Prometheus Operator) namespace, pod, container and
// endpoint. A query may group or match on them.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint"}

// external are the series the dashboard and the rules use that atrelay's
// /metrics does not serve, with their labels besides targetLabels: up
// (Prometheus' own, per target) and kube_pod_status_ready (kube-state-
// metrics, for readiness: atrelay exports no readiness metric; /readyz is
// for the kubelet). Nothing else is exempt: go_* and process_* are on
// /metrics and checked like atrelay_*.
var external = map[string][]string{
	"up":                    nil,
	"kube_pod_status_ready": {"uid", "condition"},
}

// labelSet is the label names the series of an expression may carry; nil
// for a scalar or a string.
type labelSet map[string]bool

func setOf(names ...string) labelSet {
	s := labelSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (s labelSet) sorted() []string { return slices.Sorted(maps.Keys(s)) }

// unknown is the label set of a series the checks could not find (already
// reported): any label passes, so that one unknown name is one error.
var unknown = labelSet{"*": true}

// has reports whether the series may carry label l.
func (s labelSet) has(l string) bool { return s[l] || s["*"] }

// checker checks expressions against a scrape. recorded holds the
// recording rules' outputs: the label sets their expressions give.
type checker struct {
	cat      catalog
	recorded map[string]labelSet
	metrics  map[string]bool // every series name a checked expression selected
}

func newChecker(cat catalog) *checker {
	return &checker{cat: cat, recorded: map[string]labelSet{}, metrics: map[string]bool{}}
}

// check parses expr and returns every problem: an unknown series, a
// matcher or a grouping on a label its series do not have, an equality
// matcher on a value the scrape never showed, histogram_quantile over
// series without le. It returns the labels of expr's result.
func (c *checker) check(expr string) (labelSet, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var errs []error
	ls := c.labels(e, &errs)
	return ls, errors.Join(errs...)
}

// labels returns the label names the series of e may carry, adding the
// problems it finds in e and its children to errs.
func (c *checker) labels(e parser.Expr, errs *[]error) labelSet {
	fail := func(format string, args ...any) { *errs = append(*errs, fmt.Errorf(format, args...)) }
	switch e := e.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return nil
	case *parser.ParenExpr:
		return c.labels(e.Expr, errs)
	case *parser.UnaryExpr:
		return c.labels(e.Expr, errs)
	case *parser.StepInvariantExpr:
		return c.labels(e.Expr, errs)
	case *parser.SubqueryExpr:
		return c.labels(e.Expr, errs)
	case *parser.MatrixSelector:
		return c.labels(e.VectorSelector, errs)
	case *parser.VectorSelector:
		return c.selector(e, fail)
	case *parser.AggregateExpr:
		inner := c.labels(e.Expr, errs)
		if e.Param != nil {
			c.labels(e.Param, errs)
		}
		for _, g := range e.Grouping {
			if !inner.has(g) {
				fail("%s: %s %s (%s): the series aggregated have no label %q (they have %s)", e, e.Op, byWord(e.Without), g, g, inner.sorted())
			}
		}
		switch {
		case e.Without:
			out := maps.Clone(inner)
			for _, g := range e.Grouping {
				delete(out, g)
			}
			return out
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			return inner
		default:
			out := setOf(e.Grouping...)
			if e.Op == parser.COUNT_VALUES {
				if s, ok := e.Param.(*parser.StringLiteral); ok {
					out[s.Val] = true
				}
			}
			return out
		}
	case *parser.Call:
		var args []labelSet
		for _, a := range e.Args {
			args = append(args, c.labels(a, errs))
		}
		switch e.Func.Name {
		case "histogram_quantile", "histogram_fraction":
			in := args[len(args)-1]
			if !in.has("le") {
				fail("%s: %s over series without le (sum by (…, le) of a _bucket series)", e, e.Func.Name)
			}
			out := maps.Clone(in)
			delete(out, "le")
			return out
		case "label_replace":
			out := maps.Clone(args[0])
			if s, ok := e.Args[1].(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
			return out
		case "absent", "absent_over_time":
			// The labels of the selector's equality matchers.
			out := labelSet{}
			parser.Inspect(e.Args[0], func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Type == labels.MatchEqual && m.Name != labels.MetricName {
							out[m.Name] = true
						}
					}
				}
				return nil
			})
			return out
		case "vector", "scalar", "time", "pi":
			return nil
		}
		// Any other function keeps the labels of its vector or range
		// argument (rate, deriv, clamp_min, …).
		for i, a := range e.Args {
			if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
				return args[i]
			}
		}
		return nil
	case *parser.BinaryExpr:
		l, r := c.labels(e.LHS, errs), c.labels(e.RHS, errs)
		if l == nil || r == nil {
			if l == nil {
				return r
			}
			return l
		}
		vm := e.VectorMatching
		if vm == nil {
			return l
		}
		if vm.On {
			for _, m := range vm.MatchingLabels {
				if !l.has(m) || !r.has(m) {
					fail("%s: on (%s): both sides need label %q (left has %s, right %s)", e, strings.Join(vm.MatchingLabels, ", "), m, l.sorted(), r.sorted())
				}
			}
		}
		switch {
		case e.Op == parser.LOR:
			out := maps.Clone(l)
			maps.Copy(out, r)
			return out
		case e.Op == parser.LAND || e.Op == parser.LUNLESS:
			return l
		case vm.Card == parser.CardManyToOne:
			out := maps.Clone(l)
			for _, inc := range vm.Include {
				if !r.has(inc) {
					fail("%s: group_left (%s): the right side has no label %q", e, strings.Join(vm.Include, ", "), inc)
				}
				out[inc] = true
			}
			return out
		case vm.Card == parser.CardOneToMany:
			out := maps.Clone(r)
			for _, inc := range vm.Include {
				if !l.has(inc) {
					fail("%s: group_right (%s): the left side has no label %q", e, strings.Join(vm.Include, ", "), inc)
				}
				out[inc] = true
			}
			return out
		case vm.On:
			return setOf(vm.MatchingLabels...)
		default:
			out := maps.Clone(l)
			for _, m := range vm.MatchingLabels {
				delete(out, m)
			}
			return out
		}
	}
	*errs = append(*errs, fmt.Errorf("%s: no check knows %T", e, e))
	return nil
}

func byWord(without bool) string {
	if without {
		return "without"
	}
	return "by"
}

// selector checks one vector selector and returns its series' labels.
func (c *checker) selector(vs *parser.VectorSelector, fail func(string, ...any)) labelSet {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	if name == "" {
		fail("%s: no metric name", vs)
		return unknown
	}
	c.metrics[name] = true
	var have labelSet
	values := map[string]map[string]bool{}
	if ls, ok := c.cat[name]; ok {
		have = setOf(targetLabels...)
		for l, vs := range ls {
			have[l] = true
			values[l] = vs
		}
	} else if extra, ok := external[name]; ok {
		have = setOf(targetLabels...)
		for _, l := range extra {
			have[l] = true
		}
	} else if rec, ok := c.recorded[name]; ok {
		have = rec
	} else {
		fail("%s: no series %s on /metrics (nor an exempt external series, nor a recording rule)", vs, name)
		return unknown
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			continue
		}
		if !have[m.Name] {
			fail("%s: %s has no label %q (it has %s)", vs, name, m.Name, have.sorted())
			continue
		}
		// A value this query expects: /metrics must have shown it (every
		// counter's known label values are there, at 0, from the start).
		if vals, ok := values[m.Name]; ok && m.Type == labels.MatchEqual && m.Value != "" && !vals[m.Value] {
			fail("%s: %s{%s} never seen on /metrics (values: %s)", vs, name, m, slices.Sorted(maps.Keys(vals)))
		}
	}
	return have
}
