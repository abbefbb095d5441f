package jobwatchtest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/jobwatchtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// finish claims job id and ends it with ev, as a worker would.
func finish(t *testing.T, q *fake.Backend, id jobwatch.JobID, ev statemachine.Event) {
	t.Helper()
	ctx := context.Background()
	if err := q.Apply(ctx, statemachine.Claim, id); err != nil {
		t.Error(err)
		return
	}
	if err := q.Apply(ctx, ev, id); err != nil {
		t.Error(err)
	}
}

func TestNewIsListening(t *testing.T) {
	q, w := jobwatchtest.New(t)
	if n := q.Counters().ActiveSubscriptions; n != 1 {
		t.Fatalf("%d live subscriptions when New returned, want 1", n)
	}
	ids, err := q.Enqueue(t.Context(), queue.NewJob{Entrypoint: "e"})
	if err != nil {
		t.Fatal(err)
	}
	finish(t, q, ids[0], statemachine.Complete)
	if st, err := w.Wait(t.Context(), ids[0]); err != nil || st != statemachine.Successful {
		t.Fatalf("Wait = %s, %v", st, err)
	}
}

// TestDroppedNotificationsResolveByThePoll: the case that takes the 5 s
// poll with the production defaults.
func TestDroppedNotificationsResolveByThePoll(t *testing.T) {
	q, w := jobwatchtest.New(t)
	// The enqueue's and the completion's (a claim notifies nobody): a
	// notification of the enqueue that arrived after the wait's read
	// would otherwise start a read that sees the job end.
	q.DropNotifications(2)
	ids, err := q.EnqueueN(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Once the wait's own read has seen the job queued, only the poll
		// can tell the Watcher it ended.
		if err := q.WaitReads(t.Context(), 1); err != nil {
			t.Error(err)
			return
		}
		finish(t, q, ids[0], statemachine.Complete)
	}()
	start := time.Now()
	st, err := w.Wait(t.Context(), ids[0])
	<-done
	if err != nil || st != statemachine.Successful {
		t.Fatalf("Wait = %s, %v", st, err)
	}
	if s := w.Stats(); s.Resolved.Poll != 1 {
		t.Fatalf("Stats.Resolved = %+v, want the wait resolved by the poll", s.Resolved)
	}
	t.Logf("resolved by the poll after %s", time.Since(start).Round(time.Millisecond))
}

// TestUnknownIDEndsAfterTheGrace: the case that takes the 30 s grace with
// the production defaults.
func TestUnknownIDEndsAfterTheGrace(t *testing.T) {
	_, w := jobwatchtest.New(t)
	start := time.Now()
	_, err := w.Wait(t.Context(), 42)
	if !errors.Is(err, jobwatch.ErrNotFound) {
		t.Fatalf("Wait(42) = %v, want ErrNotFound", err)
	}
	if d := time.Since(start); d < jobwatchtest.NotFoundGrace {
		t.Fatalf("ErrNotFound after %s, before the %s grace", d, jobwatchtest.NotFoundGrace)
	}
	t.Logf("ErrNotFound after %s", time.Since(start).Round(time.Millisecond))
}

func TestNewWatcherOnOwnBackend(t *testing.T) {
	b := fake.New(fake.WithNotifyIDs())
	t.Cleanup(func() { b.Close() })
	w1 := jobwatchtest.NewWatcher(t, b)
	w2 := jobwatchtest.NewWatcher(t, b)
	if n := b.Counters().ActiveSubscriptions; n != 2 || w1 == w2 {
		t.Fatalf("%d live subscriptions for two Watchers", n)
	}
	// Poll only: nothing to wait for.
	w3 := jobwatchtest.NewWatcher(t, b, jobwatch.WithPollOnly())
	if !w3.Stats().PollOnly {
		t.Fatal("not poll-only")
	}
}

// fatalTB records a Fatal instead of failing the test, and ends the
// goroutine as testing.T's Fatal does.
type fatalTB struct {
	testing.TB
	msg string // written before Goexit, read after the goroutine ended
}

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...); runtime.Goexit() }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBadInputFailsTheTest(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(tb testing.TB)
		want string
	}{
		{"invalid option", func(tb testing.TB) { jobwatchtest.New(tb, jobwatch.WithRefreshInterval(-1)) }, "invalid option"},
		{"nil backend", func(tb testing.TB) { jobwatchtest.NewWatcher(tb, nil) }, "nil backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(f)
			}()
			<-done
			if !strings.Contains(f.msg, tc.want) {
				t.Fatalf("Fatal message %q, want one containing %q", f.msg, tc.want)
			}
		})
	}
}
