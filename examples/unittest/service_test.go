package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/jobwatchtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Every Watcher and fake must be closed by the end of the tests: goleak
// fails the run if a goroutine is left over.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// worker is what a test's pretend worker does once the order is enqueued
// and the wait has read it.
type worker func(ctx context.Context, q *fake.Backend) error

// claim takes the order's job, as a worker process would.
func claim(ctx context.Context, q *fake.Backend) (queue.Job, error) {
	jobs, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{Entrypoint}, Limit: 1})
	if err == nil && len(jobs) != 1 {
		err = errors.New("no order to claim")
	}
	if err != nil {
		return queue.Job{}, err
	}
	return jobs[0], nil
}

// complete claims the order and completes it.
func complete(ctx context.Context, q *fake.Backend) error {
	j, err := claim(ctx, q)
	if err != nil {
		return err
	}
	return q.Complete(ctx, j.ID)
}

func TestProcessOrder(t *testing.T) {
	tests := []struct {
		name    string
		faults  func(q *fake.Backend) // injected before the order is placed
		work    worker                // nil: no worker ever touches the job
		timeout time.Duration         // default 10s: long enough never to flake
		want    error                 // matched with errors.Is; nil means success
		check   func(t *testing.T, q *fake.Backend, id jobwatch.JobID, err error, s jobwatch.Stats)
	}{
		{name: "success", work: complete},
		{
			name: "worker raised",
			work: func(ctx context.Context, q *fake.Backend) error {
				j, err := claim(ctx, q)
				if err != nil {
					return err
				}
				return q.Exception(ctx, j.ID, queue.TracebackOf(errors.New("card declined")))
			},
			want: ErrRejected,
			check: func(t *testing.T, _ *fake.Backend, _ jobwatch.JobID, err error, _ jobwatch.Stats) {
				if !strings.HasSuffix(err.Error(), "order rejected: card declined") {
					t.Errorf("error %q does not give the worker's reason", err)
				}
			},
		},
		{
			name: "canceled before it ran",
			work: func(ctx context.Context, q *fake.Backend) error {
				return q.Cancel(ctx, 1) // a fresh fake's first job: the order's
			},
			want: ErrCanceled,
		},
		{
			name:    "never finishes",
			timeout: 50 * time.Millisecond,
			want:    ErrTimeout,
			check: func(t *testing.T, q *fake.Backend, id jobwatch.JobID, _ error, s jobwatch.Stats) {
				// Giving up waiting leaves the job alone, and the Watcher
				// forgets the wait at once.
				if st, _ := q.State(id); st != statemachine.Queued {
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
			// notify nobody: jobwatchtest's 10ms poll resolves the wait,
			// where the production 5s one would take seconds.
			faults: func(q *fake.Backend) { q.DropNotifications(3) },
			work:   complete,
			check: func(t *testing.T, _ *fake.Backend, _ jobwatch.JobID, _ error, s jobwatch.Stats) {
				if s.Resolved.Poll != 1 {
					t.Errorf("Stats.Resolved = %+v, want the wait resolved by the poll", s.Resolved)
				}
			},
		},
		{
			name:   "status reads fail, then recover",
			faults: func(q *fake.Backend) { q.FailReads(3, nil) },
			work:   complete,
			check: func(t *testing.T, _ *fake.Backend, _ jobwatch.JobID, _ error, s jobwatch.Stats) {
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
			defer cancel()
			q, w := jobwatchtest.New(t)
			if tc.faults != nil {
				tc.faults(q)
			}
			var workers sync.WaitGroup
			defer workers.Wait() // stop the worker before the test ends
			if tc.work != nil {
				workers.Go(func() {
					// The order is enqueued before the wait starts, and
					// the wait's first read has started (failed or not)
					// once WaitReads returns: from then on only a
					// notification or the poll can end it.
					if err := q.WaitReads(ctx, 1); err != nil {
						t.Errorf("worker: %v", err)
						return
					}
					if err := tc.work(ctx, q); err != nil {
						t.Errorf("worker: %v", err)
					}
				})
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
				tc.check(t, q, id, err, w.Stats())
			}
		})
	}
}

// TestWaitOrderUnknown: an order id the queue never knew ends with
// ErrUnknownOrder after jobwatchtest's 100ms not-found grace, not the
// production 30s.
func TestWaitOrderUnknown(t *testing.T) {
	q, w := jobwatchtest.New(t)
	if err := WaitOrder(t.Context(), w, q, 42, 10*time.Second); !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("WaitOrder(42) = %v, want ErrUnknownOrder", err)
	}
}

// TestWaitOrderUnknownProductionGrace: the same with the production 30s
// grace, in a synctest bubble, where it passes in virtual time.
func TestWaitOrderUnknownProductionGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, w := jobwatchtest.NewInBubble(t)
		start := time.Now()
		err := WaitOrder(t.Context(), w, q, 42, time.Minute)
		if !errors.Is(err, ErrUnknownOrder) || time.Since(start) < jobwatch.DefaultNotFoundGrace {
			t.Fatalf("WaitOrder(42) = %v after %s, want ErrUnknownOrder after the %s grace", err, time.Since(start), jobwatch.DefaultNotFoundGrace)
		}
	})
}
