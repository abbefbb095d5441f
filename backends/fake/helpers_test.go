package fake

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// testTimeout bounds every wait so a bug fails the test instead of hanging it.
const testTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newBackend(t *testing.T, opts ...Option) *Backend {
	t.Helper()
	b := New(opts...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func listen(t *testing.T, b *Backend) jobwatch.Subscription {
	t.Helper()
	s, err := b.Listen(testCtx(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func next(t *testing.T, s jobwatch.Subscription) jobwatch.Notification {
	t.Helper()
	n, err := s.Next(testCtx(t))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return n
}

func enqueue(t *testing.T, b *Backend, n int) []jobwatch.JobID {
	t.Helper()
	ids, err := b.EnqueueN(testCtx(t), n)
	if err != nil {
		t.Fatalf("Enqueue(%d): %v", n, err)
	}
	return ids
}

func apply(t *testing.T, b *Backend, ev statemachine.Event, ids ...jobwatch.JobID) {
	t.Helper()
	if err := b.Apply(testCtx(t), ev, ids...); err != nil {
		t.Fatalf("Apply(%s, %v): %v", ev, ids, err)
	}
}

// pending reports how many notifications s holds, counting an owed Resync
// and delayed deliveries not yet due.
func pending(s jobwatch.Subscription) int {
	sub := s.(*subscription)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	n := len(sub.buf) + len(sub.timers)
	if sub.resync {
		n++
	}
	return n
}

func assertEmpty(t *testing.T, s jobwatch.Subscription) {
	t.Helper()
	if n := pending(s); n != 0 {
		t.Fatalf("subscription holds %d notifications, want none", n)
	}
}

// expectMarker commits one Enqueue and checks that its notification (the
// backend must use WithNotifyIDs) is the next one s delivers: whatever was
// expected before it has been consumed and nothing else was sent.
func expectMarker(t *testing.T, b *Backend, s jobwatch.Subscription) {
	t.Helper()
	ids := enqueue(t, b, 1)
	n := next(t, s)
	if n.Resync || !slices.Equal(n.IDs, ids) {
		t.Fatalf("next notification = %+v, want the marker %v", n, ids)
	}
}

func states(t *testing.T, b *Backend, ids ...jobwatch.JobID) []statemachine.State {
	t.Helper()
	out := make([]statemachine.State, len(ids))
	for i, id := range ids {
		out[i], _ = b.State(id)
	}
	return out
}

func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want one matching %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("err = %v, does not match %v", err, target)
		}
	}
}
