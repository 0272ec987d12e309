package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// row is a scenario's line of the table: its runs added up.
type row struct {
	scenario, fault, kafka, result        string
	runs                                  int
	produced, lost, dups, bound           int
	requests, samples, violations, staleC int
	took                                  time.Duration
	pending                               bool
	exact                                 bool // duplicates must equal bound
}

// Table writes the results as a Markdown table, one row per scenario, and
// the failures and notes below it. It returns whether every run passed
// (a pending or skipped run does not fail).
func Table(w io.Writer, results []Result, took time.Duration) bool {
	order := map[string]int{}
	faults := map[string]string{}
	for i, s := range Scenarios() {
		order[s.Name] = i
		faults[s.Name] = s.Fault
	}
	sort.SliceStable(results, func(i, j int) bool {
		if order[results[i].Scenario] != order[results[j].Scenario] {
			return order[results[i].Scenario] < order[results[j].Scenario]
		}
		return results[i].N < results[j].N
	})
	var rows []*row
	byName := map[string]*row{}
	ok := true
	for _, r := range results {
		rw := byName[r.Scenario]
		if rw == nil {
			rw = &row{scenario: r.Scenario, fault: faults[r.Scenario], result: "PASS"}
			byName[r.Scenario] = rw
			rows = append(rows, rw)
		}
		kinds := map[string]bool{}
		for _, k := range strings.Split(rw.kafka, "+") {
			kinds[k] = k != ""
		}
		if !kinds[r.Kafka] {
			if rw.kafka != "" {
				rw.kafka += "+"
			}
			rw.kafka += r.Kafka
		}
		switch {
		case r.Skipped != "":
			if rw.runs == 0 {
				rw.result = "SKIP"
			}
			continue
		case r.Pending != "":
			rw.pending = true
		case r.Failed() != "":
			rw.result, ok = "FAIL", false
		}
		rw.runs++
		c := r.Counts
		rw.produced += c.Produced
		rw.lost += c.Lost
		rw.dups += c.Duplicates
		rw.bound += r.Bound
		rw.exact = rw.exact || r.Exact
		rw.requests += c.Requests
		rw.samples += c.Samples
		rw.violations += len(c.Violations)
		rw.staleC += c.StaleCommits
		rw.took += r.Took
	}
	fmt.Fprintf(w, "| scenario | runs | broker | produced | lost | duplicates | bound | invariant | result | time |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		inv := fmt.Sprintf("ok: %d commit requests, %d samples", rw.requests, rw.samples)
		if rw.violations > 0 {
			inv = fmt.Sprintf("**%d violations**", rw.violations)
		}
		if rw.staleC > 0 {
			inv += fmt.Sprintf(" (%d stale-generation commits refused)", rw.staleC)
		}
		result := rw.result
		if rw.pending && result == "PASS" {
			result = "PENDING"
		}
		bound := fmt.Sprint(rw.bound)
		if rw.exact {
			bound = "= " + bound
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %d | %d | %s | %s | %s | %.0fs |\n",
			rw.scenario, rw.runs, rw.kafka, rw.produced, rw.lost, rw.dups, bound, inv, result, rw.took.Seconds())
	}
	fmt.Fprintf(w, "\nWall time %s (a scenario's runs run at once, except the broker restart's; time adds up the runs). "+
		"produced, lost, duplicates and bound add up the runs; bound is what the fault may re-send (0: nothing; = n: exactly n).\n\n",
		took.Round(time.Second))
	fmt.Fprintf(w, "Faults:\n\n")
	for _, rw := range rows {
		fmt.Fprintf(w, "- **%s**: %s\n", rw.scenario, rw.fault)
	}
	fmt.Fprintf(w, "\nRuns:\n\n")
	for _, r := range results {
		fmt.Fprintf(w, "- %s #%d (%s, %.1fs): %s\n", r.Scenario, r.N, r.Kafka, r.Took.Seconds(), verdict(r))
		c := r.Counts
		if r.Skipped == "" && r.Err == nil {
			fmt.Fprintf(w, "  - ledger: produced %d, delivered %d, duplicates %d, dlq %d, parked %d (pending %d), filtered %d, gone %d, lost %d, stale deliveries %d\n",
				c.Produced, c.Delivered, c.Duplicates, c.DLQ, c.Parked, c.ParkedPending, c.Filtered, c.Gone, c.Lost, c.Stale)
			if len(c.DLQReasons) > 0 {
				fmt.Fprintf(w, "  - dead-lettered by reason: %v\n", c.DLQReasons)
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", strings.ReplaceAll(n, "\n", "\n    "))
		}
	}
	return ok
}
