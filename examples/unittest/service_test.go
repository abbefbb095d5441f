package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Every Watcher and fake must be closed by the end of the tests: goleak
// fails the run if a goroutine is left over.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// worker is what a test's pretend worker does with the job it is given.
type worker func(ctx context.Context, b *fake.Backend, id jobwatch.JobID) error

// finish claims the job and ends it with ev, as a worker process would.
func finish(ev statemachine.Event) worker {
	return func(ctx context.Context, b *fake.Backend, id jobwatch.JobID) error {
		if err := b.Apply(ctx, statemachine.Claim, id); err != nil {
			return err
		}
		return b.Apply(ctx, ev, id)
	}
}

func TestProcessOrder(t *testing.T) {
	tests := []struct {
		name    string
		faults  func(b *fake.Backend) // injected before the order is placed
		work    worker                // nil: no worker ever touches the job
		timeout time.Duration         // default 10s: long enough never to flake
		want    error                 // matched with errors.Is; nil means success
		check   func(t *testing.T, b *fake.Backend, id jobwatch.JobID, s jobwatch.Stats)
	}{
		{name: "success", work: finish(statemachine.Complete)},
		{name: "worker raised", work: finish(statemachine.Error), want: ErrRejected},
		{
			name: "canceled before it ran",
			work: func(ctx context.Context, b *fake.Backend, id jobwatch.JobID) error {
				return b.Apply(ctx, statemachine.Cancel, id)
			},
			want: ErrCanceled,
		},
		{
			name:    "never finishes",
			timeout: 50 * time.Millisecond,
			want:    ErrTimeout,
			check: func(t *testing.T, b *fake.Backend, id jobwatch.JobID, s jobwatch.Stats) {
				// Giving up waiting leaves the job alone, and the Watcher
				// forgets the wait at once.
				if st, _ := b.State(id); st != statemachine.Queued {
					t.Errorf("job %d is %s, want queued", id, st)
				}
				if s.Waiters != 0 {
					t.Errorf("Stats.Waiters = %d after the timeout, want 0", s.Waiters)
				}
			},
		},
		{
			name: "notifications lost, the poll saves it",
			// The three commits of the job (enqueue, claim, complete)
			// notify nobody.
			faults: func(b *fake.Backend) { b.DropNotifications(3) },
			work: func(ctx context.Context, b *fake.Backend, id jobwatch.JobID) error {
				// Finish only once the wait's own read has seen the job
				// queued: from then on only the poll can tell the Watcher
				// that it ended.
				if err := b.WaitReads(ctx, 1); err != nil {
					return err
				}
				return finish(statemachine.Complete)(ctx, b, id)
			},
			check: func(t *testing.T, _ *fake.Backend, _ jobwatch.JobID, s jobwatch.Stats) {
				if s.Resolved.Poll != 1 {
					t.Errorf("Stats.Resolved = %+v, want the wait resolved by the poll", s.Resolved)
				}
			},
		},
		{
			name:   "status reads fail, then recover",
			faults: func(b *fake.Backend) { b.FailReads(3, nil) },
			work:   finish(statemachine.Complete),
			check: func(t *testing.T, _ *fake.Backend, _ jobwatch.JobID, s jobwatch.Stats) {
				if s.ReadErrors != 3 || !errors.Is(s.LastError, fake.ErrInjected) {
					t.Errorf("Stats.ReadErrors = %d, LastError = %v; want the 3 injected failures", s.ReadErrors, s.LastError)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has its own fake and Watcher
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			b, w := newWatcher(ctx, t)
			q := &fakeQueue{backend: b}
			if tc.work != nil {
				q.work = func(id jobwatch.JobID, _ string) {
					if err := tc.work(ctx, b, id); err != nil {
						t.Errorf("worker: %v", err)
					}
				}
			}
			// Stop the worker before the test ends, whatever happened.
			defer q.workers.Wait()
			defer cancel()
			if tc.faults != nil {
				tc.faults(b)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}

			id, err := ProcessOrder(ctx, w, q, "book", timeout)
			if !errors.Is(err, tc.want) { // errors.Is(err, nil) means err == nil
				t.Fatalf("ProcessOrder = %v, want %v", err, tc.want)
			}
			if id <= 0 {
				t.Fatalf("ProcessOrder returned job id %d for an enqueued order", id)
			}
			if tc.check != nil {
				tc.check(t, b, id, w.Stats())
			}
		})
	}
}

// newWatcher returns a fake and a Watcher on it, listening, both closed when
// the test ends. The intervals are short so that retries and the poll take
// milliseconds, not the production seconds.
func newWatcher(ctx context.Context, t *testing.T) (*fake.Backend, *jobwatch.Watcher) {
	t.Helper()
	b := fake.New()
	t.Cleanup(func() { b.Close() })
	w, err := jobwatch.New(b,
		jobwatch.WithDebounce(0),
		jobwatch.WithRefreshInterval(50*time.Millisecond),
		jobwatch.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	// Listening is set up in the background; wait for it, or a
	// notification sent before it would not exist to be lost.
	if err := b.WaitListening(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return b, w
}
