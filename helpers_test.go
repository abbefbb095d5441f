package jobwatch_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The watcher's timing tests run in a synctest bubble: time is virtual, so
// a debounce, a backoff, a grace or a poll interval passes at once and in
// order, and synctest.Wait says when every goroutine of the watcher and the
// fake has done what it can. Nothing waits on the wall clock.

// quiet waits until the watcher and the fake have acted on everything they
// were told and are blocked, waiting for a timer or for more input.
func quiet() { synctest.Wait() }

// advance lets d of virtual time pass, then waits until all is quiet.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// newFake returns a fake backend closed at the end of the test.
func newFake(t *testing.T, opts ...fake.Option) *fake.Backend {
	t.Helper()
	b := fake.New(opts...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newWatcher returns a Watcher closed at the end of the test. A test that
// ends with the feed having missed a change fails: the feeds of these
// tests are complete (the one test that breaks a feed on purpose makes its
// Watcher itself).
func newWatcher(t *testing.T, d jobwatch.Driver, opts ...jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	w, err := jobwatch.New(d, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if m := w.Stats().MissedChanges; m != 0 {
			t.Errorf("Stats.MissedChanges = %d, want 0", m)
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// listening waits until the watcher has a live subscription and has done
// the reads that follow it.
func listening(t *testing.T, w *jobwatch.Watcher) {
	t.Helper()
	quiet()
	if !w.Stats().Listening {
		t.Fatal("the watcher is not listening")
	}
}

// result is what a wait returned.
type result struct {
	state statemachine.State
	err   error
}

// goWait starts Wait(ctx, id) and returns where its result arrives.
func goWait(w *jobwatch.Watcher, ctx context.Context, id jobwatch.JobID) <-chan result {
	out := make(chan result, 1)
	go func() {
		st, err := w.Wait(ctx, id)
		out <- result{st, err}
	}()
	return out
}

// goWaitMany starts one Wait per id; wait returns their results in order.
func goWaitMany(w *jobwatch.Watcher, ctx context.Context, ids []jobwatch.JobID) (wait func() []result) {
	chans := make([]<-chan result, len(ids))
	for i, id := range ids {
		chans[i] = goWait(w, ctx, id)
	}
	return func() []result {
		out := make([]result, len(chans))
		for i, c := range chans {
			out[i] = <-c
		}
		return out
	}
}

// returned reports whether a wait has returned (after quiet or advance).
func returned(c <-chan result) (result, bool) {
	select {
	case r := <-c:
		return r, true
	default:
		return result{}, false
	}
}

func mustEnqueue(t *testing.T, b *fake.Backend, n int) []jobwatch.JobID {
	t.Helper()
	ids, err := b.EnqueueN(context.Background(), n)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return ids
}

func mustApply(t *testing.T, b *fake.Backend, evs []statemachine.Event, ids ...jobwatch.JobID) {
	t.Helper()
	for _, ev := range evs {
		if err := b.Apply(context.Background(), ev, ids...); err != nil {
			t.Fatalf("Apply %s: %v", ev, err)
		}
	}
}

var (
	succeed = []statemachine.Event{statemachine.Claim, statemachine.Complete}
	hold    = []statemachine.Event{statemachine.Claim, statemachine.Hold}
	claim   = []statemachine.Event{statemachine.Claim}
	remove  = []statemachine.Event{statemachine.Delete}
)

// hourly is a refresh interval long enough that no poll runs in a test
// unless it lets an hour of virtual time pass.
const hourly = time.Hour
