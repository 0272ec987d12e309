package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenarios are the suite's faults, in the order they run.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "collector 5xx", Fault: "every request answered 500/502/503/504 for 30 s (8 s in the subset)", On: onAny, Subset: true, Run: collector5xx},
		{Name: "Retry-After 3600", Fault: "429/503 with Retry-After: 3600 for 15 s; the wait is capped by backoff.max", On: onAny, Run: retryAfter},
		{Name: "collector hangs", Fault: "no answer for 20 s; request_timeout 1 s", On: onAny, Run: collectorHangs},
		{Name: "connection resets", Fault: "every other request reset (RST) after its body is read, 20 s", On: onAny, Run: connectionResets},
		{Name: "bad event 400", Fault: "the collector answers 400 to any request holding one of 5 marked events", On: onAny, Subset: true, Run: badEvent},
		{Name: "broker restart", Fault: "Apache Kafka stopped for 8 s mid-stream, then started", On: onKafka, Serial: true, Run: brokerRestart},
		{Name: "SIGKILL x5", Fault: "atrelay killed every 2-3 s, 5 times, restarted each time", On: onAny, Subset: true, Budget: 4 * time.Minute, Run: sigkill},
		{Name: "SIGTERM mid-batch", Fault: "SIGTERM while requests are in flight (collector 100 ms), then a restart", On: onAny, Subset: true, Run: sigterm},
		{Name: "scale 1-3-1", Fault: "2 members join, then leave (SIGTERM), collector 50 ms a request", On: onAny, Run: scale},
		{Name: "zombie member", Fault: "SIGSTOP past the session timeout, another member takes over, SIGCONT", On: onAny, Subset: true, Run: zombie},
		{Name: "registry down", Fault: "registry 503/reset for 30 s while records of an uncached schema id arrive", On: onAny, Subset: true, Run: registryDown},
		{Name: "poison pills", Fault: "truncated, garbage, unknown schema id and 5 MB records among good ones", On: onAny, Subset: true, Run: poisonPills},
		{Name: "DLQ topic missing", Fault: "no DLQ topic while poison pills arrive; created after 10 s", On: onAny, Subset: true, Run: dlqMissing},
		{Name: "bad configs", Fault: "atrelay run with 8 broken configurations", On: onAny, Subset: true, Run: badConfigs},
		{Name: "offsets reset by time", Fault: "run, stop, `offsets reset --to <time> --execute`, run again", On: onAny, Subset: true, Run: offsetsReset},
		{Name: "site down (parking)", Fault: "one site answers 503 for 2 min (park_after 2 s); the other keeps going", On: onAny, Budget: 5 * time.Minute, Run: siteDown},
		{Name: "commit below log start", Fault: "records deleted past the committed offset while the group was stopped", On: onAny, Run: logStart},
	}
}

// hold waits d: the length of a fault, not a wait for an event.
func hold(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// length is the fault's length: full in the whole suite, quick in the
// subset.
func (r *Run) length(full, quick time.Duration) time.Duration {
	if r.Full {
		return full
	}
	return quick
}

func deliverable(items []Item) int {
	n := 0
	for _, it := range items {
		if it.Want == wantDeliver {
			n++
		}
	}
	return n
}

// midStream is the common shape: half the events produced, a member
// started, a third of them delivered; then the fault begins, the other
// half is produced, the fault lasts d and ends; then everything must
// settle.
func midStream(ctx context.Context, r *Run, events int, fault func(on bool), d time.Duration) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	items := r.EventItems(r.Events(1, events, 3), schemaID, nil)
	half := len(items) / 2
	if err := r.Produce(ctx, items[:half]); err != nil {
		return err
	}
	if _, err := r.Start(); err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(items[:half])/3); err != nil {
		return err
	}
	fault(true)
	before := r.delivered()
	if err := r.Produce(ctx, items[half:]); err != nil {
		return err
	}
	if err := hold(ctx, d); err != nil {
		return err
	}
	if d > 0 {
		r.Note("delivered during the fault: %d", r.delivered()-before)
	}
	fault(false)
	return r.finish(ctx)
}

func collector5xx(ctx context.Context, r *Run) error {
	var failing atomic.Bool
	statuses := []int{500, 502, 503, 504}
	return midStream(ctx, r, 2000, func(on bool) {
		failing.Store(on)
		r.Col.SetScript(func(Hit) Action {
			if failing.Load() {
				return Action{Status: statuses[rand.IntN(len(statuses))]}
			}
			return Action{}
		})
	}, r.length(30*time.Second, 8*time.Second))
}

func retryAfter(ctx context.Context, r *Run) error {
	var failing atomic.Bool
	recovery := make(chan time.Duration, 1)
	r.Col.SetScript(func(Hit) Action {
		if failing.Load() {
			return Action{Status: []int{429, 503}[rand.IntN(2)], RetryAfter: "3600"}
		}
		return Action{}
	})
	err := midStream(ctx, r, 2000, func(on bool) {
		failing.Store(on)
		if on {
			return
		}
		// How long after the collector recovers the first event arrives:
		// the relay must not wait the hour it was told to.
		at, n := time.Now(), r.delivered()
		go func() {
			poll(ctx, 10*time.Millisecond, func() (bool, error) { return r.delivered() > n, nil }, func() string { return "" })
			recovery <- time.Since(at)
		}()
	}, r.length(15*time.Second, 6*time.Second))
	answers := r.Col.Answers()
	select {
	case d := <-recovery:
		r.Note("Retry-After: 3600 answered %d times; first delivery %s after the collector recovered (backoff.max %s caps the wait)",
			answers["429"]+answers["503"], d.Round(time.Millisecond), r.Settings.BackoffMax)
	default:
	}
	return err
}

func collectorHangs(ctx context.Context, r *Run) error {
	var hanging atomic.Bool
	r.Col.SetScript(func(Hit) Action { return Action{Hang: hanging.Load()} })
	err := midStream(ctx, r, 2000, hanging.Store, r.length(20*time.Second, 6*time.Second))
	r.Note("requests left hanging: %d (request_timeout %s)", r.Col.Answers()["hang"], r.Settings.RequestTimeout)
	return err
}

func connectionResets(ctx context.Context, r *Run) error {
	var resetting atomic.Bool
	var n atomic.Int64
	r.Col.SetScript(func(Hit) Action { return Action{Reset: resetting.Load() && n.Add(1)%2 == 0} })
	err := midStream(ctx, r, 2000, resetting.Store, r.length(20*time.Second, 6*time.Second))
	r.Note("connections reset: %d", r.Col.Answers()["reset"])
	return err
}

func badEvent(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	events := r.Events(2, 1500, 4)
	// One event in the middle of each of 5 visitors' requests (4 events a
	// visitor, sent together when they are batched together).
	bad := map[string]bool{}
	for i := 0; i+3 < len(events) && len(bad) < 5; i += 4 {
		if w, _ := expect(&events[i]); w == wantDeliver && events[i].AnonymousUserID == events[i+3].AnonymousUserID {
			bad[events[i+1].EventID] = true
		}
	}
	r.Col.SetScript(func(h Hit) Action {
		for _, id := range h.EventIDs {
			if bad[id] {
				return Action{Status: 400}
			}
		}
		return Action{}
	})
	if err := r.Produce(ctx, r.EventItems(events, schemaID, bad)); err != nil {
		return err
	}
	if _, err := r.Start(); err != nil {
		return err
	}
	err := r.finish(ctx)
	r.Note("requests answered 400: %d (bisection)", r.Col.Answers()["400"])
	return err
}

func brokerRestart(ctx context.Context, r *Run) error {
	r.Bound = r.Settings.inFlightBound()
	var restartErr error
	err := midStream(ctx, r, 3000, func(on bool) {
		if on {
			before, start := r.delivered(), time.Now()
			restartErr = r.Kafka.restart(ctx, 8*time.Second)
			r.Note("broker stopped 8 s, back after %s; %d delivered meanwhile", time.Since(start).Round(100*time.Millisecond), r.delivered()-before)
		}
	}, 0)
	return errors.Join(restartErr, err)
}

// slowBacklog is the membership scenarios' start: events (3 a visitor)
// all produced before one member starts, against a collector that answers
// each request after delay, so that work is always in flight when the
// membership changes.
func slowBacklog(ctx context.Context, r *Run, delay time.Duration, seed uint64, events int) ([]Item, *Process, error) {
	if err := r.setup(ctx, nil, true); err != nil {
		return nil, nil, err
	}
	r.Col.SetScript(func(Hit) Action { return Action{Delay: delay} })
	items := r.EventItems(r.Events(seed, events, 3), schemaID, nil)
	if err := r.Produce(ctx, items); err != nil {
		return nil, nil, err
	}
	p, err := r.Start()
	return items, p, err
}

// sigkill kills the member 5 times, each 2-3 s after it got its
// partitions, and starts another. What may be sent twice is what was
// delivered above the committed offset at each kill, plus what was in
// flight: the bound adds both up, kill by kill.
func sigkill(ctx context.Context, r *Run) error {
	_, p, err := slowBacklog(ctx, r, 100*time.Millisecond, 3, 6000)
	if err != nil {
		return err
	}
	for k := range 5 {
		if _, err := p.WaitLog(ctx, 0, r.assigned()); err != nil {
			return err
		}
		if err := hold(ctx, time.Duration(2000+rand.IntN(1000))*time.Millisecond); err != nil {
			return err
		}
		p.Kill()
		above, err := r.deliveredAboveCommit(ctx)
		if err != nil {
			return err
		}
		r.Bound += above + r.Settings.inFlightBound()
		r.Note("kill %d at %d delivered: %d delivered above the committed offsets", k+1, r.delivered(), above)
		if p, err = r.Start(); err != nil {
			return err
		}
	}
	return r.finish(ctx)
}

// deliveredAboveCommit counts the delivered records at or above the
// group's committed offsets.
func (r *Run) deliveredAboveCommit(ctx context.Context) (int, error) {
	offs, err := r.adm.FetchOffsets(ctx, r.Group)
	if err != nil {
		return 0, fmt.Errorf("committed offsets: %w", err)
	}
	r.Led.mu.Lock()
	defer r.Led.mu.Unlock()
	n := 0
	for _, rec := range r.Led.recs {
		c, ok := offs.Lookup(r.Topic, rec.p)
		if len(rec.deliveries) > 0 && (!ok || rec.off >= c.At) {
			n++
		}
	}
	return n, nil
}

func sigterm(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	r.Col.SetScript(func(Hit) Action { return Action{Delay: 100 * time.Millisecond} })
	items := r.EventItems(r.Events(4, 3000, 3), schemaID, nil)
	half := len(items) / 2
	if err := r.Produce(ctx, items[:half]); err != nil {
		return err
	}
	p, err := r.Start()
	if err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(items[:half])/3); err != nil {
		return err
	}
	at := r.delivered()
	if err := r.Terminate(p); err != nil {
		return err
	}
	r.Note("SIGTERM at %d delivered; %d delivered by the drain", at, r.delivered()-at)
	if err := r.Produce(ctx, items[half:]); err != nil {
		return err
	}
	if _, err := r.Start(); err != nil {
		return err
	}
	return r.finish(ctx)
}

func scale(ctx context.Context, r *Run) error {
	r.Parts = 6
	items, _, err := slowBacklog(ctx, r, 50*time.Millisecond, 5, 4000)
	if err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(items)/5); err != nil {
		return err
	}
	var joined []*Process
	for range 2 {
		p, err := r.Start()
		if err != nil {
			return err
		}
		if _, err := p.WaitLog(ctx, 0, r.assigned()); err != nil {
			return err
		}
		joined = append(joined, p)
	}
	if err := r.WaitDelivered(ctx, deliverable(items)*3/5); err != nil {
		return err
	}
	for _, p := range joined {
		if err := r.Terminate(p); err != nil {
			return err
		}
	}
	// Four rebalances, each may cut off a member's requests in flight.
	r.Bound = 4 * r.Settings.inFlightBound()
	return r.finish(ctx)
}

// zombie stops a member past its session timeout: the other member takes
// its partitions; when it runs again, whatever it delivers before it
// notices its loss is counted (stale), and every commit it sends is of an
// old generation, which the broker refuses.
func zombie(ctx context.Context, r *Run) error {
	items, a, err := slowBacklog(ctx, r, 100*time.Millisecond, 6, 8000)
	if err != nil {
		return err
	}
	if _, err := a.WaitLog(ctx, 0, r.assigned()); err != nil {
		return err
	}
	b, err := r.Start()
	if err != nil {
		return err
	}
	if _, err := b.WaitLog(ctx, 0, r.assigned()); err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(items)/4); err != nil {
		return err
	}
	mark := b.Mark()
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// b takes a's partitions once a's session has expired.
	if _, err := b.WaitLog(ctx, mark, r.assigned()); err != nil {
		return err
	}
	stopped := r.delivered()
	if err := hold(ctx, 2*time.Second); err != nil {
		return err
	}
	amark := a.Mark()
	r.Led.SetStale(a.Name, true)
	if err := a.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	_, err = a.WaitLog(ctx, amark, "partitions lost")
	r.Led.SetStale(a.Name, false)
	if err != nil {
		return err
	}
	r.Note("%s stopped at %d delivered; %s took over; %s noticed its loss %d lines after SIGCONT",
		a.Name, stopped, b.Name, a.Name, len(a.Lines())-amark)
	r.Bound = r.Settings.inFlightBound()
	return r.finish(ctx)
}

func registryDown(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	first := r.EventItems(r.Events(7, 600, 3), schemaID, nil)
	if err := r.Produce(ctx, first); err != nil {
		return err
	}
	if _, err := r.Start(); err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(first)); err != nil {
		return err
	}
	// Records of schema id 2, which the relay has not cached: it must ask
	// the registry, which is down.
	r.Reg.SetDown(true)
	second := r.EventItems(r.Events(8, 1500, 3), schemaIDv1, nil)
	if err := r.Produce(ctx, second); err != nil {
		return err
	}
	before := r.delivered()
	if err := hold(ctx, r.length(30*time.Second, 8*time.Second)); err != nil {
		return err
	}
	r.Note("registry requests refused: %d; delivered while down: %d", r.Reg.refused.Load(), r.delivered()-before)
	r.Reg.SetDown(false)
	return r.finish(ctx)
}

// poison produces pills among good events: each kind at three places.
func poisonItems(r *Run, events int, seed uint64) []Item {
	items := r.EventItems(r.Events(seed, events, 3), schemaID, nil)
	huge := make([]byte, 5<<20)
	huge[0] = 0 // Confluent magic, schema id 1, then 5 MB of garbage
	huge[4] = schemaID
	for i := 5; i < len(huge); i++ {
		huge[i] = byte(i*7 + 3)
	}
	var out []Item
	for i, it := range items {
		out = append(out, it)
		if i%(len(items)/3) != len(items)/6 {
			continue
		}
		good := it.Value
		pills := [][]byte{
			good[:len(good)/2], // truncated
			[]byte("\x02this is not avro at all \xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
			append([]byte{0, 0, 0x0f, 0x42, 0x3f}, good[5:]...), // schema id 999999
			huge,
		}
		for _, v := range pills {
			out = append(out, Item{Partition: it.Partition, Key: []byte("poison"), Value: v, Want: wantDLQ})
		}
	}
	return out
}

func poisonPills(ctx context.Context, r *Run) error {
	big := "16777216"
	if err := r.setup(ctx, map[string]*string{"max.message.bytes": &big}, true); err != nil {
		return err
	}
	if err := r.Produce(ctx, poisonItems(r, 1500, 9)); err != nil {
		return err
	}
	if _, err := r.Start(); err != nil {
		return err
	}
	return r.finish(ctx)
}

// dlqMissing: without the DLQ topic a poison pill cannot settle, so its
// partition's commit stays below it (nothing skipped) and the log says
// why; once the topic exists, everything settles.
func dlqMissing(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, false); err != nil {
		return err
	}
	items := poisonItems(r, 1200, 10)
	for i := range items {
		if len(items[i].Value) > 1<<20 {
			items[i].Value = items[i].Value[:100] // no 5 MB record here
		}
	}
	if err := r.Produce(ctx, items); err != nil {
		return err
	}
	p, err := r.Start()
	if err != nil {
		return err
	}
	if _, err := p.WaitLog(ctx, 0, r.DLQTopic, `"level":"ERROR"`); err != nil {
		return fmt.Errorf("no ERROR naming the DLQ topic: %w", err)
	}
	if err := hold(ctx, r.length(10*time.Second, 5*time.Second)); err != nil {
		return err
	}
	// Every partition holding a pill is stalled at or below its first pill.
	first := map[int32]int64{}
	r.Led.mu.Lock()
	for _, rec := range r.Led.recs {
		if o, ok := first[rec.p]; rec.want == wantDLQ && (!ok || rec.off < o) {
			first[rec.p] = rec.off
		}
	}
	r.Led.mu.Unlock()
	offs, err := r.adm.FetchOffsets(ctx, r.Group)
	if err != nil {
		return err
	}
	for p, o := range first {
		if c, ok := offs.Lookup(r.Topic, p); ok && c.At > o {
			return fmt.Errorf("partition %d committed %d, past its first pill at %d with no DLQ topic", p, c.At, o)
		}
	}
	lines := p.Find(0, r.DLQTopic, `"level":"ERROR"`)
	r.Note("stalled partitions %v below their first pill; %d ERROR lines, first: %.200s", first, len(lines), lines[0])
	if err := r.Kafka.createTopic(ctx, r.adm, r.DLQTopic, 1, nil); err != nil {
		return err
	}
	return r.finish(ctx)
}

// badConfigs: each broken configuration stops `atrelay run` with exit 1
// and a line naming the key, before it joins the group.
func badConfigs(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	// Records nobody may consume: kept out of the ledger.
	recs := make([]*kgo.Record, 50)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: r.Topic, Partition: int32(i) % r.Parts, Value: []byte("x")}
	}
	if err := r.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return err
	}
	collect, err := r.Col.Endpoint("bad")
	if err != nil {
		return err
	}
	good, err := r.config("good", collect, r.Settings)
	if err != nil {
		return err
	}
	cases := []struct{ name, from, to, key string }{
		{"unknown key", "kafka: {", "kafka: {tlss: {enabled: true}, ", "kafka.tlss: unknown key"},
		{"duration without unit", "linger: 20ms", "linger: 100", "delivery.linger: must be a duration"},
		{"site id zero", "site_id: 100001", "site_id: 0", "integrations[0].site_id"},
		{"park topic is the topic", "park_topic: \"" + r.ParkTopic + "\"", "park_topic: \"" + r.Topic + "\"", "kafka.park_topic"},
		{"framing", "framing: auto", "framing: avro", "codec.framing"},
		{"unset variable", "group: \"" + r.Group + "\"", "group: \"${ATRELAY_CHAOS_UNSET}\"", "kafka.group: ${ATRELAY_CHAOS_UNSET}"},
		{"buffer below batch", "max_buffered_events: 2000", "max_buffered_events: 10", "delivery.max_buffered_events: must be at least max_events"},
		// Below the brokers' group.min.session.timeout.ms, a join would be
		// refused and retried for ever.
		{"session timeout too short", "session_timeout: 6s", "session_timeout: 2s", "kafka.session_timeout: must be between 6s and 30m0s"},
	}
	text, err := readFile(good)
	if err != nil {
		return err
	}
	var errs []error
	for i, c := range cases {
		if !strings.Contains(text, c.from) {
			errs = append(errs, fmt.Errorf("%s: the template lacks %q", c.name, c.from))
			continue
		}
		path := fmt.Sprintf("%s/bad-%d.yaml", r.Dir, i)
		if err := writeFile(path, strings.Replace(text, c.from, c.to, 1)); err != nil {
			return err
		}
		code, out, err := r.Command(ctx, fmt.Sprintf("bad-%d", i), "run", "--config", path, "--log-format", "json")
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		case code != 1 || !strings.Contains(out, "atrelay: "+c.key):
			errs = append(errs, fmt.Errorf("%s: exit %d, want 1 and a line starting \"atrelay: %s\":\n%s", c.name, code, c.key, out))
		}
	}
	offs, err := r.adm.FetchOffsets(ctx, r.Group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return err
	}
	if n := len(offs.Offsets()); n > 0 {
		errs = append(errs, fmt.Errorf("a broken configuration committed offsets: %v", offs.Offsets()))
	}
	r.Note("%d configurations refused with exit 1, each naming its key", len(cases)-len(errs))
	return errors.Join(errs...)
}

// offsetsReset delivers two generations of records, the second an hour
// younger; after `offsets reset --to` the second's first timestamp, the
// next run must deliver exactly the second again.
func offsetsReset(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	older, newer := now.Add(-2*time.Hour), now.Add(-time.Hour)
	a := r.EventItems(r.Events(11, 900, 3), schemaID, nil)
	b := r.EventItems(r.Events(12, 900, 3), schemaID, nil)
	for i := range a {
		a[i].Time = older.Add(time.Duration(i) * time.Millisecond)
	}
	for i := range b {
		b[i].Time = newer.Add(time.Duration(i) * time.Millisecond)
	}
	if err := r.Produce(ctx, append(a, b...)); err != nil {
		return err
	}
	p, err := r.Start()
	if err != nil {
		return err
	}
	if err := r.WaitSettled(ctx); err != nil {
		return err
	}
	if err := r.Terminate(p); err != nil {
		return err
	}
	code, out, err := r.Command(ctx, "reset", "offsets", "reset", "--config", r.Dir+"/member-1.yaml", "--to", newer.UTC().Format(time.RFC3339), "--execute")
	if err != nil || code != 0 {
		return fmt.Errorf("offsets reset: exit %d, %v:\n%s", code, err, out)
	}
	// Where the reset must have put each partition: its first record of
	// the younger generation.
	want := map[int32]int64{}
	r.Led.mu.Lock()
	for _, rec := range r.Led.recs {
		if o, ok := want[rec.p]; !rec.ts.Before(newer) && (!ok || rec.off < o) {
			want[rec.p] = rec.off
		}
	}
	r.Led.mu.Unlock()
	offs, err := r.adm.FetchOffsets(ctx, r.Group)
	if err != nil {
		return err
	}
	for p, o := range want {
		if c, ok := offs.Lookup(r.Topic, p); !ok || c.At != o {
			return fmt.Errorf("after the reset partition %d is at %d, want %d", p, c.At, o)
		}
	}
	r.Led.Rewind(want)
	if _, err := r.Start(); err != nil {
		return err
	}
	r.Bound, r.ExactDuplicates = deliverable(b), true
	return r.finish(ctx)
}

func siteDown(ctx context.Context, r *Run) error {
	r.Settings.ParkAfter = 2 * time.Second
	var down atomic.Bool
	r.Col.SetScript(func(h Hit) Action {
		if down.Load() && h.Site == siteNews {
			return Action{Status: 503}
		}
		return Action{}
	})
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	items := r.EventItems(r.Events(13, 3000, 3), schemaID, nil)
	half := len(items) / 2
	if err := r.Produce(ctx, items[:half]); err != nil {
		return err
	}
	p, err := r.Start()
	if err != nil {
		return err
	}
	if err := r.WaitDelivered(ctx, deliverable(items[:half])/3); err != nil {
		return err
	}
	down.Store(true)
	if err := r.Produce(ctx, items[half:]); err != nil {
		return err
	}
	if _, err := p.WaitLog(ctx, 0, "site parked"); err != nil {
		return err
	}
	// While the site is down, the group's commits reach the end: the
	// site's records are parked, the other site's delivered.
	wait, cancel := context.WithTimeout(ctx, r.length(2*time.Minute, 20*time.Second))
	err = poll(wait, 200*time.Millisecond, func() (bool, error) {
		done, _, err := r.committedAll(wait, r.Group, r.Topic)
		return done, err
	}, func() string { return "the group's commits did not reach the end while the site was down" })
	cancel()
	if err != nil {
		return err
	}
	if err := hold(ctx, r.length(2*time.Minute, 10*time.Second)); err != nil {
		return err
	}
	down.Store(false)
	return r.finish(ctx)
}

// logStart: retention deleted records past the group's committed offset
// while it was stopped. The service must say so (an ERROR naming the
// partition and the count) and start at the log start.
func logStart(ctx context.Context, r *Run) error {
	if err := r.setup(ctx, nil, true); err != nil {
		return err
	}
	first := r.EventItems(r.Events(14, 600, 3), schemaID, nil)
	if err := r.Produce(ctx, first); err != nil {
		return err
	}
	p, err := r.Start()
	if err != nil {
		return err
	}
	if err := r.WaitSettled(ctx); err != nil {
		return err
	}
	if err := r.Terminate(p); err != nil {
		return err
	}
	second := r.EventItems(r.Events(15, 800, 3), schemaID, nil)
	if err := r.Produce(ctx, second); err != nil {
		return err
	}
	offs, err := r.adm.FetchOffsets(ctx, r.Group)
	if err != nil {
		return err
	}
	del := kadm.Offsets{}
	gone := 0
	for part := range r.Parts {
		c, ok := offs.Lookup(r.Topic, part)
		if !ok {
			continue
		}
		to := c.At + 40
		del.Add(kadm.Offset{Topic: r.Topic, Partition: part, At: to})
		gone += r.Led.Gone(part, c.At, to)
	}
	if _, err := r.adm.DeleteRecords(ctx, del); err != nil {
		return fmt.Errorf("delete records: %w", err)
	}
	r.Note("deleted %d unread records past the committed offsets", gone)
	p, err = r.Start()
	if err != nil {
		return err
	}
	if err := r.finish(ctx); err != nil {
		return err
	}
	lines := p.Find(0, `"level":"ERROR"`, "log start")
	if len(lines) == 0 {
		r.Pending = "no ERROR line naming the gap (\"log start\"): the feature is not in the service yet"
	} else {
		r.Note("ERROR: %.300s", lines[0])
	}
	return nil
}
