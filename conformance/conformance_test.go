package conformance_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeHarness adapts the in-memory backend to conformance.Harness, with
// both optional capabilities.
type fakeHarness struct{ b *fake.Backend }

func newFakeHarness(t *testing.T) *fakeHarness {
	b := fake.New()
	t.Cleanup(func() { _ = b.Close() })
	return &fakeHarness{b}
}

func (h *fakeHarness) Driver() jobwatch.Driver { return h.b }

func (h *fakeHarness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	return h.b.EnqueueN(ctx, n)
}

func (h *fakeHarness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return h.b.Apply(ctx, ev, ids...)
}

func (h *fakeHarness) BreakListener(context.Context) error {
	h.b.Disconnect()
	return nil
}

func (h *fakeHarness) NotifyRaw(_ context.Context, payload string) error {
	h.b.Notify(payload)
	return nil
}

var (
	_ conformance.ListenerBreaker = (*fakeHarness)(nil)
	_ conformance.RawNotifier     = (*fakeHarness)(nil)
)

func TestConformanceFake(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Harness { return newFakeHarness(t) })
}

// minimalHarness hides the optional capabilities: the suite must still
// run, and say which cases it did not run.
type minimalHarness struct{ h *fakeHarness }

// Driver hides the fake's ChangeFeed too, so the Watcher re-reads every
// pending job on each notification, as it does on a backend without one.
func (m minimalHarness) Driver() jobwatch.Driver { return driverOnly{m.h.Driver()} }

// driverOnly exposes the two Driver methods and nothing else.
type driverOnly struct{ jobwatch.Driver }

func (m minimalHarness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	return m.h.Enqueue(ctx, n)
}
func (m minimalHarness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return m.h.Apply(ctx, ev, ids...)
}

func TestConformanceFakeWithoutOptionalCapabilities(t *testing.T) {
	if testing.Short() {
		t.Log("-short: the full suite already ran in TestConformanceFake; not repeating it without the optional capabilities")
		return
	}
	conformance.Run(t, func(t *testing.T) conformance.Harness { return minimalHarness{newFakeHarness(t)} })
}

// TestConformanceFakeTinyBuffer runs the suite on a fake whose
// subscriptions buffer a single notification, so that any burst overflows
// into a Resync, as a busy real listener's buffer does.
func TestConformanceFakeTinyBuffer(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Harness {
		b := fake.New(fake.WithBuffer(1))
		t.Cleanup(func() { _ = b.Close() })
		return &fakeHarness{b}
	})
}

// ApplyOpen runs the change in a fake transaction held open until end.
func (h *fakeHarness) ApplyOpen(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) (func(context.Context, bool) error, error) {
	applied, finish, result := make(chan error, 1), make(chan bool, 1), make(chan error, 1)
	go func() {
		result <- h.b.Tx(context.Background(), func(tx *fake.Tx) error {
			err := tx.Apply(ctx, ev, ids...)
			applied <- err
			if err != nil || !<-finish {
				return errRollback
			}
			return nil
		})
	}()
	if err := <-applied; err != nil {
		<-result
		return nil, err
	}
	var once sync.Once
	return func(ctx context.Context, commit bool) error {
		err := errors.New("already ended")
		once.Do(func() {
			finish <- commit
			err = <-result
			if !commit && errors.Is(err, errRollback) {
				err = nil
			}
		})
		return err
	}, nil
}

var errRollback = errors.New("rolled back on purpose")

var _ conformance.OpenApplier = (*fakeHarness)(nil)

// HoldSilently holds ids in a commit whose notification the fake drops.
func (h *fakeHarness) HoldSilently(ctx context.Context, ids ...jobwatch.JobID) error {
	h.b.DropNotifications(1)
	return h.b.Apply(ctx, statemachine.Hold, ids...)
}

var _ conformance.SilentHolder = (*fakeHarness)(nil)

// OpenResources reports the fake's live subscriptions; it has no
// connections.
func (h *fakeHarness) OpenResources() conformance.Resources {
	return conformance.Resources{Subscriptions: h.b.Counters().ActiveSubscriptions}
}

// StallReads holds the fake's reads after their snapshot (fake.BlockReads)
// and reports the first read that starts holding.
func (h *fakeHarness) StallReads(context.Context) (<-chan struct{}, func(), error) {
	from := h.b.Counters().Reads
	release := h.b.BlockReads()
	stalled, done := make(chan struct{}), make(chan struct{})
	wctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		if h.b.WaitReads(wctx, from+1) == nil {
			close(stalled)
		}
	}()
	var once sync.Once
	return stalled, func() {
		once.Do(func() {
			release()
			cancel()
			<-done
		})
	}, nil
}

var (
	_ conformance.ResourceReporter = (*fakeHarness)(nil)
	_ conformance.ReadStaller      = (*fakeHarness)(nil)
)
