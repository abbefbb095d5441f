package conformance

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// TimeoutEnv names the environment variable that overrides the suite's
// timeout for operations that should complete (default 10s).
const TimeoutEnv = "JOBWATCH_CONFORMANCE_TIMEOUT"

const (
	defaultTimeout = 10 * time.Second
	// hour as a refresh interval means "no safety-net poll during this
	// case": only a notification, a resync or a wait's own read can
	// resolve anything.
	hour = time.Hour
	// slack is what a latency bound allows beyond the ideal, so that a
	// loaded CI machine or a real database is not failed unfairly.
	slack = time.Second
	// quick is the debounce of cases that are not about debouncing.
	quick = 10 * time.Millisecond
	// settle is how long a negative check ("this wait is still pending")
	// gives the Watcher to act on a read it has already completed. There
	// is no signal for "did not happen", so this is a plain delay.
	settle = 50 * time.Millisecond
)

type capability string

const (
	capNone    capability = ""
	capBreaker capability = "ListenerBreaker"
	capRaw     capability = "RawNotifier"
	capOpen    capability = "OpenApplier"
	capFeed    capability = "ChangeFeed"
)

type testCase struct {
	name  string
	rule  string
	needs capability
	run   func(e *env)
}

// Run runs the conformance suite against the backend newHarness makes. Each
// case is a subtest with a fresh harness from newHarness; see the package
// documentation for an example.
//
// Cases needing an optional capability (ListenerBreaker, RawNotifier, ...)
// that the harness does not have are not run; Run logs once which ones and
// why. With a ResourceReporter harness, every case ends with a check that
// the backend holds no subscription or connection any more; without one,
// Run logs that this check is not made.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	if newHarness == nil {
		t.Fatal("conformance: newHarness is nil")
	}
	timeout := suiteTimeout(t)

	// One harness up front, only to learn the optional capabilities.
	probe := newHarness(t)
	if probe == nil {
		t.Fatal("conformance: newHarness returned nil")
	}
	has := map[capability]bool{capNone: true}
	_, has[capBreaker] = probe.(ListenerBreaker)
	_, has[capRaw] = probe.(RawNotifier)
	_, has[capOpen] = probe.(OpenApplier)
	_, has[capSilent] = probe.(SilentHolder)
	_, has[capFeed] = probe.Driver().(jobwatch.ChangeFeed)
	_, has[capResources] = probe.(ResourceReporter)
	_, has[capStall] = probe.(ReadStaller)
	if !has[capResources] {
		t.Log("conformance: the harness does not implement conformance.ResourceReporter: the suite cannot check after each case that the backend released its connections and subscriptions")
	}

	var notRun []string
	for _, c := range cases() {
		if !has[c.needs] {
			what := "the harness does not implement conformance." + string(c.needs)
			if c.needs == capFeed {
				what = "the driver does not implement the optional jobwatch.ChangeFeed"
			}
			notRun = append(notRun, fmt.Sprintf("%s (%s)", c.name, what))
			continue
		}
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("rule broken: %s", c.rule)
				}
			})
			e := newEnv(t, newHarness, timeout)
			c.run(e)
		})
	}
	if len(notRun) > 0 {
		t.Logf("conformance: %d case(s) not run: %s", len(notRun), strings.Join(notRun, "; "))
	}
}

func suiteTimeout(t *testing.T) time.Duration {
	s := os.Getenv(TimeoutEnv)
	if s == "" {
		return defaultTimeout
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("conformance: %s=%q is not a positive duration", TimeoutEnv, s)
	}
	return d
}

// env is one case's world: a fresh harness, its driver wrapped for
// counting, and helpers that bound every blocking call.
type env struct {
	t       *testing.T
	h       Harness
	d       *countingDriver // h.Driver(), counted
	raw     jobwatch.Driver // h.Driver() itself
	ctx     context.Context // cancelled when the case ends
	timeout time.Duration

	cleanupOnce sync.Once
	cleanupBy   time.Time // see cleanupDeadline
}

func newEnv(t *testing.T, newHarness func(t *testing.T) Harness, timeout time.Duration) *env {
	t.Helper()
	h := newHarness(t)
	if h == nil {
		t.Fatal("newHarness returned nil")
	}
	d := h.Driver()
	if d == nil {
		t.Fatal("Harness.Driver returned nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, h: h, d: newCountingDriver(d), raw: d, ctx: ctx, timeout: timeout}
	if rr, ok := h.(ResourceReporter); ok {
		// Cleanups run last-in first-out: this one runs after every
		// cleanup the case registers (its watchers and subscriptions
		// closed) and before the harness's own.
		t.Cleanup(func() { e.checkReleased(rr) })
	}
	t.Cleanup(cancel)
	return e
}

// op returns a context bounded by the suite timeout.
func (e *env) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.timeout)
}

func (e *env) enqueue(n int) []jobwatch.JobID {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	ids, err := e.h.Enqueue(ctx, n)
	if err != nil {
		e.t.Fatalf("Harness.Enqueue(%d): %v", n, err)
	}
	if len(ids) != n {
		e.t.Fatalf("Harness.Enqueue(%d) returned %d ids", n, len(ids))
	}
	return ids
}

func (e *env) apply(ev sm.Event, ids ...jobwatch.JobID) {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	if err := e.h.Apply(ctx, ev, ids...); err != nil {
		e.t.Fatalf("Harness.Apply(%s, %d ids): %v", ev, len(ids), err)
	}
}

// applyBatched applies ev to ids in transactions of at most n ids.
func (e *env) applyBatched(ev sm.Event, n int, ids []jobwatch.JobID) {
	e.t.Helper()
	for len(ids) > 0 {
		k := min(n, len(ids))
		e.apply(ev, ids[:k]...)
		ids = ids[k:]
	}
}

// watcher makes a Watcher on the counting driver; it is closed when the
// case ends, and the close must be bounded.
func (e *env) watcher(opts ...jobwatch.Option) *jobwatch.Watcher {
	e.t.Helper()
	return e.watcherOn(e.d.driver(), opts...)
}

func (e *env) watcherOn(d jobwatch.Driver, opts ...jobwatch.Option) *jobwatch.Watcher {
	e.t.Helper()
	w, err := jobwatch.New(d, opts...)
	if err != nil {
		e.t.Fatalf("jobwatch.New: %v", err)
	}
	e.t.Cleanup(func() {
		e.boundedCleanup("Watcher.Close (cleanup of a watcher the case made)", w.Close)
		// Rule of every case: a change feed never misses a change that a
		// read of every pending job then finds.
		if m := w.Stats().MissedChanges; m != 0 {
			e.t.Errorf("the driver's ChangeFeed missed %d changes that a full read found (Stats.MissedChanges)", m)
		}
	})
	return w
}

// eventually polls cond until it holds, or fails the case after the suite
// timeout. Only for conditions nothing signals (Watcher stats, driver
// counts).
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	if !e.poll(e.timeout, cond) {
		e.t.Fatalf("timed out after %s waiting until %s", e.timeout, what)
	}
}

// poll reports whether cond held within d.
func (e *env) poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-tick.C:
		case <-e.ctx.Done():
			return false
		}
	}
	return true
}

func (e *env) waitListening(w *jobwatch.Watcher) {
	e.t.Helper()
	e.eventually("the watcher is listening (Stats.Listening)", func() bool { return w.Stats().Listening })
}

// readSince waits until every id has been covered by a completed status
// read that started after mark: the Watcher has then registered them and
// seen their state as of that read.
func (e *env) readSince(mark uint64, ids ...jobwatch.JobID) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("the watcher has read the status of %d waited job(s)", len(ids)), func() bool {
		return e.d.readSince(mark, ids...)
	})
}

type waitResult struct {
	state sm.State
	err   error
	at    time.Time
}

type allResult struct {
	states []sm.State
	err    error
	at     time.Time
}

type anyResult struct {
	status jobwatch.Status
	err    error
	at     time.Time
}

// goWait runs w.Wait(id) in a goroutine, bounded by the suite timeout.
func (e *env) goWait(w *jobwatch.Watcher, id jobwatch.JobID) <-chan waitResult {
	ctx, cancel := e.op()
	return e.goWaitCtx(ctx, cancel, w, id)
}

func (e *env) goWaitCtx(ctx context.Context, cancel context.CancelFunc, w *jobwatch.Watcher, id jobwatch.JobID) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		defer cancel()
		st, err := w.Wait(ctx, id)
		ch <- waitResult{st, err, time.Now()}
	}()
	return ch
}

func (e *env) goWaitAll(w *jobwatch.Watcher, ids []jobwatch.JobID) <-chan allResult {
	ctx, cancel := e.op()
	ch := make(chan allResult, 1)
	go func() {
		defer cancel()
		st, err := w.WaitAll(ctx, ids)
		ch <- allResult{st, err, time.Now()}
	}()
	return ch
}

func (e *env) goWaitAny(w *jobwatch.Watcher, ids []jobwatch.JobID) <-chan anyResult {
	ctx, cancel := e.op()
	ch := make(chan anyResult, 1)
	go func() {
		defer cancel()
		st, err := w.WaitAny(ctx, ids)
		ch <- anyResult{st, err, time.Now()}
	}()
	return ch
}

// recv receives from ch, failing the case if nothing arrives in time. The
// goroutines behind ch are bounded by the suite timeout themselves, so the
// extra slack only matters when the Watcher ignores its ctx.
func recv[T any](e *env, ch <-chan T, what string) T {
	e.t.Helper()
	return recvWithin(e, ch, e.timeout+slack, what)
}

func recvWithin[T any](e *env, ch <-chan T, d time.Duration, what string) T {
	e.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		e.t.Fatalf("%s: nothing after %s", what, d)
		panic("unreachable")
	}
}

// pending fails the case if ch delivers within settle: the wait behind it
// must still be pending.
func pending[T any](e *env, ch <-chan T, what string) {
	e.t.Helper()
	timer := time.NewTimer(settle)
	defer timer.Stop()
	select {
	case v := <-ch:
		e.t.Fatalf("%s: the wait ended (%s), but it must still be pending", what, describe(v))
	case <-timer.C:
	}
}

func describe(v any) string {
	switch r := v.(type) {
	case waitResult:
		return fmt.Sprintf("state %s, error %v", r.state, r.err)
	case allResult:
		return fmt.Sprintf("states %v, error %v", r.states, r.err)
	case anyResult:
		return fmt.Sprintf("status %v, error %v", r.status, r.err)
	}
	return fmt.Sprintf("%+v", v)
}

// mustState is wantState for a result the rest of the case depends on
// (a sentinel): a mismatch ends the case.
func (e *env) mustState(r waitResult, want sm.State, what string) {
	e.t.Helper()
	if r.err != nil || r.state != want {
		e.t.Fatalf("%s: Wait returned %s, %v; want %s", what, r.state, r.err, want)
	}
}

// wantState checks one Wait's result.
func (e *env) wantState(r waitResult, want sm.State, what string) {
	e.t.Helper()
	if r.err != nil {
		e.t.Errorf("%s: Wait error %v, want state %s", what, r.err, want)
		return
	}
	if r.state != want {
		e.t.Errorf("%s: Wait returned %s, want %s", what, r.state, want)
	}
}

// fetch reads statuses straight from the backend (not counted).
func (e *env) fetch(ids ...jobwatch.JobID) map[jobwatch.JobID]sm.State {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	st, err := e.raw.FetchStatuses(ctx, ids)
	if err != nil {
		e.t.Fatalf("FetchStatuses(%v): %v", ids, err)
	}
	out := make(map[jobwatch.JobID]sm.State, len(st))
	for _, s := range st {
		out[s.ID] = s.State
	}
	return out
}

// statsDelta is after minus before for the counters the cases compare.
func causeDelta(after, before jobwatch.CauseCounts) jobwatch.CauseCounts {
	return jobwatch.CauseCounts{
		Wait:         after.Wait - before.Wait,
		Notification: after.Notification - before.Notification,
		Poll:         after.Poll - before.Poll,
		Resync:       after.Resync - before.Resync,
	}
}

func sameIDs(got, want []jobwatch.JobID) bool {
	if len(got) != len(want) {
		return false
	}
	count := map[jobwatch.JobID]int{}
	for _, id := range got {
		count[id]++
	}
	for _, id := range want {
		count[id]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
