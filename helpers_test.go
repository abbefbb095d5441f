package jobwatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// newFake returns a fake backend closed at the end of the test.
func newFake(t *testing.T, opts ...fake.Option) *fake.Backend {
	t.Helper()
	b := fake.New(opts...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newWatcher returns a Watcher closed at the end of the test.
func newWatcher(t *testing.T, d jobwatch.Driver, opts ...jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	w, err := jobwatch.New(d, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// bounded returns a context that ends the test's waiting after d.
func bounded(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds; for state that has no signal.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := bounded(t, 10*time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// listening waits until the watcher has a live subscription and has made
// the read that follows it.
func listening(t *testing.T, w *jobwatch.Watcher) {
	t.Helper()
	eventually(t, "listening", func() bool { return w.Stats().Listening })
}

func mustEnqueue(t *testing.T, b *fake.Backend, n int) []jobwatch.JobID {
	t.Helper()
	ids, err := b.Enqueue(context.Background(), n)
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
)
