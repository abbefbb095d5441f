// Package jobwatchtest gives unit tests a queue and a Watcher that are fast
// to test against: the in-memory backend (backends/fake) and a Watcher on it
// with test-friendly timings, both closed when the test ends, and ready to
// be waited on.
//
//	func TestCheckout(t *testing.T) {
//		q, w := jobwatchtest.New(t)
//		ids, _ := q.Enqueue(t.Context(), queue.NewJob{Entrypoint: "charge"})
//		... // the code under test, on q (a queue.Queue) and w
//	}
//
// With the production defaults a wait on a job whose notifications are lost
// takes the 5 s poll, and one on an unknown id the 30 s not-found grace;
// with Timings they take milliseconds (see the constants below).
//
// # testing/synctest
//
// The fake and the Watcher also run inside a testing/synctest bubble
// (Go 1.25+), where time is virtual: a wait that sleeps on a timer, the
// production 5 s poll or 30 s grace included, ends as soon as every
// goroutine of the bubble is blocked. Use NewInBubble there: it keeps the
// production timings, which cost nothing in virtual time (with New's 10 ms
// poll, a wait of one virtual hour would cost 360,000 real reads).
// Call it within the function given to synctest.Test, so that the fake's
// and the Watcher's goroutines, channels and timers belong to the bubble;
// the cleanup then runs inside the bubble too, before synctest.Test
// returns:
//
//	synctest.Test(t, func(t *testing.T) {
//		q, w := jobwatchtest.NewInBubble(t)
//		_, err := w.Wait(t.Context(), 42) // ErrNotFound after 30 s of virtual time, at once
//	})
//
// A fake made outside a bubble must not be used inside one, nor the
// reverse: a goroutine of a bubble blocked on another bubble's channel
// (or none) is not durably blocked, so virtual time would stop.
package jobwatchtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
)

// The timings of Timings: short enough that every fault the fake injects
// resolves in milliseconds, long enough not to spin.
const (
	// RefreshInterval is the safety-net poll: a wait whose notifications
	// were lost ends within about this long.
	RefreshInterval = 10 * time.Millisecond
	// NotFoundGrace is how long an unknown id is waited for before the
	// wait fails with jobwatch.ErrNotFound. A test that enqueues a job
	// after it starts waiting on its id (an id known in advance) should
	// pass a longer grace, or run in a synctest bubble.
	NotFoundGrace = 100 * time.Millisecond
	// BackoffMin and BackoffMax bound the retries after failed reads and
	// listens.
	BackoffMin = time.Millisecond
	BackoffMax = 10 * time.Millisecond
	// ReadyTimeout bounds how long New waits for the Watcher to listen.
	ReadyTimeout = 10 * time.Second
)

// Timings returns the Watcher options New uses: no debounce, and the
// constants above for the poll, the not-found grace and the backoff.
// Options given after them override them.
func Timings() []jobwatch.Option {
	return []jobwatch.Option{
		jobwatch.WithDebounce(0),
		jobwatch.WithRefreshInterval(RefreshInterval),
		jobwatch.WithNotFoundGrace(NotFoundGrace),
		jobwatch.WithBackoff(BackoffMin, BackoffMax),
	}
}

// New returns a new in-memory backend and a Watcher on it made with
// Timings and then opts. Both are closed by t.Cleanup (a Close error fails
// the test). New returns once the Watcher is listening (unless opts hold
// jobwatch.WithPollOnly), so a change made after it returns is notified;
// it fails the test, with t.Fatal, if an option is invalid or the Watcher
// does not listen within ReadyTimeout. Call it from the test's goroutine.
//
// The backend is a queue.Queue (producer and worker side) and has the
// fake's fault controls.
func New(t testing.TB, opts ...jobwatch.Option) (*fake.Backend, *jobwatch.Watcher) {
	t.Helper()
	b := newBackend(t)
	return b, NewWatcher(t, b, opts...)
}

// NewInBubble is New for a test inside a testing/synctest bubble: the
// Watcher has the production timings (no debounce, else the defaults) and
// then opts. See the package documentation.
func NewInBubble(t testing.TB, opts ...jobwatch.Option) (*fake.Backend, *jobwatch.Watcher) {
	t.Helper()
	b := newBackend(t)
	return b, newWatcher(t, b, append([]jobwatch.Option{jobwatch.WithDebounce(0)}, opts...))
}

func newBackend(t testing.TB) *fake.Backend {
	b := fake.New()
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// NewWatcher is New on a backend of the caller's, for example a fake made
// with options: a Watcher on b with Timings and opts, closed by t.Cleanup
// before b is (register b's Close first), listening when NewWatcher
// returns.
func NewWatcher(t testing.TB, b *fake.Backend, opts ...jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	return newWatcher(t, b, append(Timings(), opts...))
}

func newWatcher(t testing.TB, b *fake.Backend, opts []jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	if b == nil {
		t.Fatal("jobwatchtest: nil backend")
	}
	listening := b.Counters().ActiveSubscriptions
	w, err := jobwatch.New(b, opts...)
	if err != nil {
		t.Fatalf("jobwatchtest: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("jobwatchtest: %v", err)
		}
	})
	if w.Stats().PollOnly {
		return w // it never listens
	}
	if err := ready(b, listening+1); err != nil {
		t.Fatalf("jobwatchtest: the Watcher is not listening: %v", err)
	}
	if err := attached(w); err != nil {
		t.Fatalf("jobwatchtest: the Watcher is not listening: %v", err)
	}
	return w
}

// attached waits until w has taken the subscription the backend already
// counts: until then its first read after subscribing is still to come,
// and could run after the test's first change. The Watcher signals
// nothing for this, so its Stats are polled, bounded by ReadyTimeout.
func attached(w *jobwatch.Watcher) error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !w.Stats().Listening {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", ReadyTimeout, ctx.Err())
		}
	}
	return nil
}

// ready waits until b has n live subscriptions.
func ready(b *fake.Backend, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := b.WaitListening(ctx, n); err != nil {
		return fmt.Errorf("after %s: %w", ReadyTimeout, err)
	}
	return nil
}
