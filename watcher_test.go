package jobwatch_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestNewRejectsBadInput(t *testing.T) {
	d := newFake(t)
	tests := []struct {
		name   string
		driver jobwatch.Driver
		opts   []jobwatch.Option
	}{
		{"nil driver", nil, nil},
		{"nil option", d, []jobwatch.Option{nil}},
		{"zero refresh", d, []jobwatch.Option{jobwatch.WithRefreshInterval(0)}},
		{"negative refresh", d, []jobwatch.Option{jobwatch.WithRefreshInterval(-time.Second)}},
		{"negative debounce", d, []jobwatch.Option{jobwatch.WithDebounce(-1)}},
		{"negative grace", d, []jobwatch.Option{jobwatch.WithNotFoundGrace(-1)}},
		{"nil logger", d, []jobwatch.Option{jobwatch.WithLogger(nil)}},
		{"zero backoff", d, []jobwatch.Option{jobwatch.WithBackoff(0, time.Second)}},
		{"backoff min above max", d, []jobwatch.Option{jobwatch.WithBackoff(time.Second, time.Millisecond)}},
		{"zero batch", d, []jobwatch.Option{jobwatch.WithBatchSize(0)}},
		{"negative batch", d, []jobwatch.Option{jobwatch.WithBatchSize(-5)}},
		{"zero close timeout", d, []jobwatch.Option{jobwatch.WithCloseTimeout(0)}},
		{"zero call timeout", d, []jobwatch.Option{jobwatch.WithCallTimeout(0)}},
		{"negative feed threshold", d, []jobwatch.Option{jobwatch.WithFeedThreshold(-1)}},
		{"zero full-read interval", d, []jobwatch.Option{jobwatch.WithFullReadInterval(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := jobwatch.New(tt.driver, tt.opts...)
			if !errors.Is(err, jobwatch.ErrInvalidOption) {
				t.Fatalf("New: err = %v, want ErrInvalidOption", err)
			}
			if w != nil {
				t.Fatal("New returned a watcher with an error")
			}
		})
	}
}

func TestNewAcceptsEdgeValues(t *testing.T) {
	d := newFake(t)
	newWatcher(t, d, jobwatch.WithDebounce(0), jobwatch.WithNotFoundGrace(0),
		jobwatch.WithBackoff(time.Millisecond, time.Millisecond), jobwatch.WithBatchSize(1),
		jobwatch.WithFeedThreshold(0), jobwatch.WithFullReadInterval(time.Nanosecond))
}

func TestWaitRejectsBadInput(t *testing.T) {
	w := newWatcher(t, newFake(t))
	ctx := context.Background()
	for _, id := range []jobwatch.JobID{0, -1, -1 << 62} {
		if _, err := w.Wait(ctx, id); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("Wait(%d): err = %v, want ErrInvalidID", id, err)
		}
	}
	lists := [][]jobwatch.JobID{nil, {}, {1, 0}, {-3}}
	for _, ids := range lists {
		if _, err := w.WaitAll(ctx, ids); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("WaitAll(%v): err = %v, want ErrInvalidID", ids, err)
		}
		if _, err := w.WaitAny(ctx, ids); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("WaitAny(%v): err = %v, want ErrInvalidID", ids, err)
		}
		for _, err := range w.WaitEach(ctx, ids) {
			if !errors.Is(err, jobwatch.ErrInvalidID) {
				t.Errorf("WaitEach(%v): err = %v, want ErrInvalidID", ids, err)
			}
		}
	}
	if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
		t.Errorf("bad input registered waits: %+v", s)
	}
}

// Invariant 1, second half: a job already final resolves by the read its
// wait asks for, within one debounce, with no notification.
func TestWaitOnFinishedJobNeedsNoNotification(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, succeed, ids[0])
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithPollOnly())
		start := time.Now()
		st, err := w.Wait(context.Background(), ids[0])
		if err != nil || st != statemachine.Successful {
			t.Fatalf("Wait = %s, %v", st, err)
		}
		if took := time.Since(start); took != jobwatch.DefaultDebounce {
			t.Errorf("resolved after %s, want one debounce (%s)", took, jobwatch.DefaultDebounce)
		}
		if s := w.Stats(); s.Notifications != 0 || s.Resolved.Wait != 1 {
			t.Errorf("stats = %+v, want resolved by the wait's own read", s)
		}
	})
}

func TestWaitResolvesAfterNotification(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(0))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		got := goWait(w, context.Background(), ids[0])
		quiet()
		mustApply(t, b, succeed, ids[0])
		if r := <-got; r.err != nil || r.state != statemachine.Successful {
			t.Fatalf("Wait = %v", r)
		}
		if r := w.Stats().Resolved; r.Notification != 1 {
			t.Errorf("resolved = %+v, want 1 by notification", r)
		}
	})
}

// A job unknown for the whole grace ends with ErrNotFound, at the grace.
func TestNotFoundAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWatcher(t, newFake(t))
		start := time.Now()
		_, err := w.Wait(context.Background(), 424242)
		var nf *jobwatch.NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, jobwatch.ErrNotFound) || nf.IDs[0] != 424242 {
			t.Fatalf("err = %v, want NotFoundError for 424242", err)
		}
		if took := time.Since(start); took != jobwatch.DefaultNotFoundGrace {
			t.Errorf("not found after %s, want the grace (%s)", took, jobwatch.DefaultNotFoundGrace)
		}
	})
}

// A job created during the grace is found, and its wait goes on.
func TestJobCreatedDuringGraceIsFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithNotFoundGrace(time.Minute))
		listening(t, w)
		got := goWait(w, context.Background(), 1)
		advance(time.Second)
		ids := mustEnqueue(t, b, 1) // id 1
		advance(2 * time.Minute)
		if _, done := returned(got); done {
			t.Fatal("a job enqueued during the grace ended its wait")
		}
		mustApply(t, b, succeed, ids[0])
		if r := <-got; r.err != nil || r.state != statemachine.Successful {
			t.Fatalf("Wait = %v", r)
		}
	})
}

func TestPollOnlyWhenDriverCannotListen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, noListen{b}, jobwatch.WithRefreshInterval(time.Second))
		ids := mustEnqueue(t, b, 1)
		got := goWait(w, context.Background(), ids[0])
		advance(jobwatch.DefaultDebounce) // the wait's own read
		mustApply(t, b, succeed, ids[0])
		advance(time.Second * 11 / 10) // the poll, with its jitter
		if r, ok := returned(got); !ok || r.err != nil {
			t.Fatalf("not resolved by the poll: %v %v", r, ok)
		}
		s := w.Stats()
		if !s.PollOnly || s.Listening || s.Resolved.Poll != 1 {
			t.Errorf("stats = %+v, want poll-only, resolved by poll", s)
		}
	})
}

// noListen is a driver without a listener, like database/sql behind PgBouncer.
type noListen struct{ *fake.Backend }

func (noListen) Listen(context.Context) (jobwatch.Subscription, error) {
	return nil, jobwatch.ErrListenUnsupported
}

func TestWithPollOnlyNeverListens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithPollOnly())
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, succeed, ids[0])
		if _, err := w.Wait(context.Background(), ids[0]); err != nil {
			t.Fatal(err)
		}
		if n := b.Counters().Listens; n != 0 {
			t.Errorf("Listen called %d times in poll-only mode", n)
		}
	})
}

// Invariant 5: a cancelled wait is forgotten at once; nothing reads it again.
func TestCtxCancelForgetsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Second))
		ids := mustEnqueue(t, b, 1)
		ctx, cancel := context.WithCancel(context.Background())
		got := goWait(w, ctx, ids[0])
		quiet()
		cancel()
		r := <-got
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", r.err)
		}
		if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
			t.Fatalf("stats after cancel = %+v", s)
		}
		before := b.Counters().IDsRead
		advance(time.Minute)
		if n := b.Counters().IDsRead - before; n != 0 {
			t.Errorf("a cancelled wait was read %d more times", n)
		}
	})
}

// Invariant 7: Close ends pending waits with ErrClosed, later calls too,
// and every goroutine exits.
func TestCloseEndsWaitsAndIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w, err := jobwatch.New(b)
		if err != nil {
			t.Fatal(err)
		}
		ids := mustEnqueue(t, b, 2)
		one := goWait(w, context.Background(), ids[0])
		all := make(chan error, 1)
		go func() { _, err := w.WaitAll(context.Background(), ids); all <- err }()
		quiet()
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if r := <-one; !errors.Is(r.err, jobwatch.ErrClosed) {
			t.Errorf("pending Wait: %v, want ErrClosed", r.err)
		}
		if err := <-all; !errors.Is(err, jobwatch.ErrClosed) {
			t.Errorf("pending WaitAll: %v, want ErrClosed", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := w.Wait(context.Background(), ids[0]); !errors.Is(err, jobwatch.ErrClosed) {
			t.Errorf("Wait after Close: %v", err)
		}
		if n := b.Counters().ActiveSubscriptions; n != 0 {
			t.Errorf("%d subscriptions open after Close", n)
		}
	})
}

// Close is bounded even when the driver ignores its ctx and Close, and a
// concurrent second Close waits for the first and returns its result.
func TestCloseIsBoundedAndConcurrentCallsAgree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &stuckDriver{release: make(chan struct{})}
		w, err := jobwatch.New(d, jobwatch.WithCloseTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		quiet() // the listener is stuck in Next
		first := make(chan error, 1)
		go func() { first <- w.Close() }()
		quiet() // the first Close waits for the stuck goroutine
		second := make(chan error, 1)
		go func() { second <- w.Close() }()
		quiet()
		select {
		case err := <-second:
			t.Fatalf("second Close returned %v while the first was still waiting", err)
		default:
		}
		time.Sleep(time.Second)
		err1, err2 := <-first, <-second
		if err1 == nil || err1 != err2 {
			t.Errorf("Close = %v and %v, want the same timeout error", err1, err2)
		}
		close(d.release)
	})
}

// stuckDriver ignores ctx and Close in Next until release is closed.
type stuckDriver struct{ release chan struct{} }

func (d *stuckDriver) Listen(context.Context) (jobwatch.Subscription, error) { return d, nil }
func (d *stuckDriver) FetchStatuses(context.Context, []jobwatch.JobID) ([]jobwatch.Status, error) {
	return nil, nil
}
func (d *stuckDriver) Next(context.Context) (jobwatch.Notification, error) {
	<-d.release
	return jobwatch.Notification{}, errors.New("released")
}
func (d *stuckDriver) Close() error { return nil }

func TestWaitAllOrderDuplicatesAndNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithNotFoundGrace(time.Second))
		ids := mustEnqueue(t, b, 2)
		mustApply(t, b, succeed, ids[0])
		mustApply(t, b, []statemachine.Event{statemachine.Claim, statemachine.Error}, ids[1])
		in := []jobwatch.JobID{ids[1], 99, ids[0], ids[1]}
		states, err := w.WaitAll(context.Background(), in)
		var nf *jobwatch.NotFoundError
		if !errors.As(err, &nf) || len(nf.IDs) != 1 || nf.IDs[0] != 99 {
			t.Fatalf("err = %v, want not found: 99", err)
		}
		want := []statemachine.State{statemachine.Exception, statemachine.None, statemachine.Successful, statemachine.Exception}
		for i := range want {
			if states[i] != want[i] {
				t.Errorf("states = %v, want %v", states, want)
				break
			}
		}
	})
}

func TestWaitAnyFreesTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b)
		ids := mustEnqueue(t, b, 3)
		mustApply(t, b, succeed, ids[1])
		st, err := w.WaitAny(context.Background(), ids)
		if err != nil || st.ID != ids[1] || st.State != statemachine.Successful {
			t.Fatalf("WaitAny = %v, %v", st, err)
		}
		if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
			t.Errorf("stats = %+v, want the other waits dropped", s)
		}
	})
}

func TestWaitAnyNoneFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWatcher(t, newFake(t))
		_, err := w.WaitAny(context.Background(), []jobwatch.JobID{7, 8})
		var nf *jobwatch.NotFoundError
		if !errors.As(err, &nf) || len(nf.IDs) != 2 {
			t.Fatalf("err = %v, want both not found", err)
		}
	})
}

func TestSettleOnHold(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[on], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newFake(t)
				w := newWatcher(t, b, jobwatch.WithSettleOnHold(on), jobwatch.WithRefreshInterval(hourly))
				ids := mustEnqueue(t, b, 1)
				listening(t, w)
				got := goWait(w, context.Background(), ids[0])
				quiet()
				mustApply(t, b, hold, ids[0])
				advance(time.Second)
				r, done := returned(got)
				if done != on || (on && r.state != statemachine.Failed) {
					t.Fatalf("settle-on-hold %v: returned %v (%v)", on, done, r)
				}
				if !on {
					mustApply(t, b, []statemachine.Event{statemachine.Requeue, statemachine.Claim, statemachine.Complete}, ids[0])
					if r := <-got; r.state != statemachine.Successful {
						t.Fatalf("after requeue: %v", r)
					}
				}
			})
		})
	}
}

// Invariant 5: waits start no goroutine of their own: with 1,000 waits
// the only goroutines in the Watcher's code are its scheduler, its
// listener and the caller.
func TestWaitsStartNoGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b)
		ids := mustEnqueue(t, b, 1000)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _, _ = w.WaitAll(ctx, ids) }()
		quiet()
		if n := goroutinesIn("jobwatch.(*Watcher)"); n != 3 {
			t.Errorf("%d goroutines in the Watcher's code with 1,000 waits, want 3 (scheduler, listener, caller)", n)
		}
	})
}

// goroutinesIn counts the goroutines whose stack has a frame matching fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

func TestWaitEachYieldsInSettleOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithDebounce(0), jobwatch.WithRefreshInterval(hourly))
		ids := mustEnqueue(t, b, 3)
		listening(t, w)
		go func() {
			quiet()
			for _, i := range []int{2, 0, 1} {
				mustApply(t, b, succeed, ids[i])
				quiet()
			}
		}()
		var order []jobwatch.JobID
		for st, err := range w.WaitEach(context.Background(), append(ids, ids[0])) {
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, st.ID)
		}
		want := []jobwatch.JobID{ids[2], ids[0], ids[1]}
		if len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
			t.Errorf("order = %v, want %v (each distinct job once)", order, want)
		}
	})
}

// Breaking out of WaitEach drops the remaining waits at once.
func TestWaitEachBreakDropsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b)
		ids := mustEnqueue(t, b, 3)
		mustApply(t, b, succeed, ids[0])
		for range w.WaitEach(context.Background(), ids) {
			break
		}
		if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
			t.Errorf("stats after break = %+v", s)
		}
	})
}

// A call to the driver that runs over the call timeout fails and is
// retried: a dead connection cannot stall the watcher.
func TestStuckReadTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &stuckOnce{Backend: b, stuck: make(chan struct{})}
		w := newWatcher(t, d, jobwatch.WithCallTimeout(time.Second), jobwatch.WithPollOnly())
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, succeed, ids[0])
		st, err := w.Wait(context.Background(), ids[0])
		if err != nil || st != statemachine.Successful {
			t.Fatalf("Wait = %s, %v", st, err)
		}
		if s := w.Stats(); s.ReadErrors != 1 || !errors.Is(s.LastError, context.DeadlineExceeded) {
			t.Errorf("stats = %+v, want one timed-out read", s)
		}
	})
}

// stuckOnce blocks its first read until ctx ends, as a read on a silently
// dead connection would.
type stuckOnce struct {
	*fake.Backend
	stuck chan struct{}
}

func (s *stuckOnce) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	select {
	case <-s.stuck:
		return s.Backend.FetchStatuses(ctx, ids)
	default:
		close(s.stuck)
		<-ctx.Done()
		return nil, ctx.Err()
	}
}
