package jobwatch_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
		jobwatch.WithBackoff(time.Millisecond, time.Millisecond), jobwatch.WithBatchSize(1))
}

func TestWaitRejectsBadInput(t *testing.T) {
	w := newWatcher(t, newFake(t))
	ctx := bounded(t, 5*time.Second)
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
	}
	if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
		t.Errorf("bad input registered waits: %+v", s)
	}
}

func TestWaitResolvesAfterNotification(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	got := make(chan statemachine.State, 1)
	go func() {
		st, _ := w.Wait(bounded(t, 10*time.Second), ids[0])
		got <- st
	}()
	eventually(t, "wait registered and read", func() bool { return w.Stats().Reads.Total() >= 1 && w.Stats().Pending == 1 })
	mustApply(t, b, succeed, ids[0])
	if st := <-got; st != statemachine.Successful {
		t.Fatalf("state = %s, want successful", st)
	}
	if r := w.Stats().Resolved; r.Notification != 1 {
		t.Errorf("resolved = %+v, want 1 by notification", r)
	}
}

// A job that is already final is settled by the read a new wait asks for.
func TestWaitOnFinishedJobNeedsNoNotification(t *testing.T) {
	b := newFake(t)
	ids := mustEnqueue(t, b, 1)
	mustApply(t, b, succeed, ids[0])
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithPollOnly())
	st, err := w.Wait(bounded(t, 5*time.Second), ids[0])
	if err != nil || st != statemachine.Successful {
		t.Fatalf("Wait = %s, %v", st, err)
	}
	if s := w.Stats(); s.Notifications != 0 || s.Resolved.Wait != 1 {
		t.Errorf("stats = %+v, want resolved by the wait's own read", s)
	}
}

func TestPollOnlyWhenDriverCannotListen(t *testing.T) {
	b := newFake(t)
	d := noListen{b}
	w := newWatcher(t, d, jobwatch.WithRefreshInterval(20*time.Millisecond))
	ids := mustEnqueue(t, b, 1)
	done := make(chan error, 1)
	go func() { _, err := w.Wait(bounded(t, 10*time.Second), ids[0]); done <- err }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 1 })
	mustApply(t, b, succeed, ids[0])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	if !s.PollOnly || s.Listening || s.Resolved.Poll != 1 {
		t.Errorf("stats = %+v, want poll-only, resolved by poll", s)
	}
}

// noListen is a driver without a listener, like database/sql behind PgBouncer.
type noListen struct{ *fake.Backend }

func (noListen) Listen(context.Context) (jobwatch.Subscription, error) {
	return nil, jobwatch.ErrListenUnsupported
}

func TestWithPollOnlyNeverListens(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithPollOnly(), jobwatch.WithRefreshInterval(10*time.Millisecond))
	ids := mustEnqueue(t, b, 1)
	mustApply(t, b, succeed, ids[0])
	if _, err := w.Wait(bounded(t, 5*time.Second), ids[0]); err != nil {
		t.Fatal(err)
	}
	if n := b.Counters().Listens; n != 0 {
		t.Errorf("Listen called %d times in poll-only mode", n)
	}
}

// Notifications arriving while a read is in flight, and within one debounce
// window, coalesce into one more read.
func TestNotificationBurstCoalesces(t *testing.T) {
	b := newFake(t, fake.WithBuffer(4096))
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(20*time.Millisecond))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	done := make(chan statemachine.State, 1)
	go func() { st, _ := w.Wait(ctx, ids[0]); done <- st }()
	eventually(t, "initial read", func() bool { return w.Stats().Pending == 1 && b.Counters().Reads >= 1 })
	before := b.Counters().Reads
	release := b.BlockReads()
	b.Notify(`{"type":"table_changed_event","table":"pgqueuer"}`)
	if err := b.WaitReads(ctx, before+1); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := b.Enqueue(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	release()
	eventually(t, "notifications consumed", func() bool { return w.Stats().Notifications >= 1001 })
	mustApply(t, b, succeed, ids[0])
	if st := <-done; st != statemachine.Successful {
		t.Fatalf("state = %s", st)
	}
	// the blocked read, one for the burst, one for the completion
	if reads := b.Counters().Reads - before; reads > 3 {
		t.Errorf("%d reads for 1,001 notifications, want at most 3", reads)
	}
}

// A notification naming jobs makes the watcher read just those jobs.
func TestNotificationWithIDsReadsOnlyThoseIDs(t *testing.T) {
	b := newFake(t, fake.WithNotifyIDs())
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0))
	ids := mustEnqueue(t, b, 100)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = w.Wait(ctx, id) }()
	}
	eventually(t, "100 pending and read", func() bool {
		s := w.Stats()
		return s.Pending == 100 && s.IDsRead >= 100 && s.Reads.Wait >= 1
	})
	readBefore := w.Stats().IDsRead
	mustApply(t, b, succeed, ids[7])
	eventually(t, "one resolved", func() bool { return w.Stats().Pending == 99 })
	if n := w.Stats().IDsRead - readBefore; n > 2 { // claim + complete may be read separately
		t.Errorf("read %d ids after a notification naming one job", n)
	}
	rest := append(append([]jobwatch.JobID{}, ids[:7]...), ids[8:]...)
	mustApply(t, b, succeed, rest...)
	wg.Wait()
}

func TestReadFailuresBackOffAndRecover(t *testing.T) {
	b := newFake(t)
	ids := mustEnqueue(t, b, 1)
	mustApply(t, b, succeed, ids[0])
	b.FailReads(4, nil)
	const min = 10 * time.Millisecond
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	w := newWatcher(t, b, jobwatch.WithPollOnly(), jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithDebounce(0), jobwatch.WithBackoff(min, 40*time.Millisecond), jobwatch.WithLogger(logger),
		jobwatch.WithChangeFeed(false))
	start := time.Now()
	st, err := w.Wait(bounded(t, 10*time.Second), ids[0])
	if err != nil || st != statemachine.Successful {
		t.Fatalf("Wait = %s, %v", st, err)
	}
	// Backoff waits at least 0.8*(10+20+40+40) ms before the fifth read.
	if elapsed := time.Since(start); elapsed < 80*time.Millisecond {
		t.Errorf("4 failures retried within %s: not backing off", elapsed)
	}
	s := w.Stats()
	if s.ReadErrors != 4 || s.Reads.Total() != 5 || !errors.Is(s.LastError, fake.ErrInjected) {
		t.Errorf("stats = %+v, want 4 errors then a good read", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Count(logs.String(), "status read failed") != 4 {
		t.Errorf("logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// After the subscription is lost, the watcher listens again and re-reads
// everything at once, without waiting for the poll.
func TestReconnectResyncs(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithBackoff(time.Millisecond, 5*time.Millisecond))
	ids := mustEnqueue(t, b, 3)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	res := make(chan []statemachine.State, 1)
	go func() { st, _ := w.WaitAll(ctx, ids); res <- st }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 3 })
	b.DropNotifications(100)
	b.Disconnect()
	mustApply(t, b, succeed, ids...)
	got := <-res
	for i, st := range got {
		if st != statemachine.Successful {
			t.Errorf("job %d = %s", ids[i], st)
		}
	}
	s := w.Stats()
	if s.Reconnects < 1 || s.Resolved.Resync+s.Resolved.Notification == 0 {
		t.Errorf("stats = %+v, want a reconnect and a resync", s)
	}
}

// A Resync notification triggers a full read at once, debounce or not.
func TestResyncNotificationReadsAtOnce(t *testing.T) {
	b := newFake(t)
	d := &scripted{Backend: b, notes: make(chan jobwatch.Notification, 1)}
	w := newWatcher(t, d, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(time.Hour))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	done := make(chan statemachine.State, 1)
	go func() { st, _ := w.Wait(ctx, ids[0]); done <- st }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 1 })
	mustApply(t, b, succeed, ids[0])
	d.notes <- jobwatch.Notification{Resync: true}
	if st := <-done; st != statemachine.Successful {
		t.Fatalf("state = %s", st)
	}
	if r := w.Stats().Resolved; r.Resync != 1 {
		t.Errorf("resolved = %+v, want by resync", r)
	}
}

// scripted reads statuses from a fake backend but delivers only the
// notifications a test sends on notes.
type scripted struct {
	*fake.Backend
	notes chan jobwatch.Notification
}

func (s *scripted) Listen(context.Context) (jobwatch.Subscription, error) { return s, nil }
func (s *scripted) Next(ctx context.Context) (jobwatch.Notification, error) {
	select {
	case n := <-s.notes:
		return n, nil
	case <-ctx.Done():
		return jobwatch.Notification{}, ctx.Err()
	}
}
func (s *scripted) Close() error { return nil }

func TestNotFoundAfterGrace(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0), jobwatch.WithNotFoundGrace(30*time.Millisecond))
	_, err := w.Wait(bounded(t, 5*time.Second), 424242)
	var nf *jobwatch.NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, jobwatch.ErrNotFound) || nf.IDs[0] != 424242 {
		t.Fatalf("err = %v, want NotFoundError for 424242", err)
	}
}

func TestCtxCancelForgetsWait(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b)
	ids := mustEnqueue(t, b, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := w.Wait(ctx, ids[0]); done <- err }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
		t.Errorf("cancelled wait still held: %+v", s)
	}
}

func TestCloseEndsWaitsAndIsIdempotent(t *testing.T) {
	b := newFake(t)
	w, err := jobwatch.New(b)
	if err != nil {
		t.Fatal(err)
	}
	ids := mustEnqueue(t, b, 2)
	errs := make(chan error, 3)
	ctx := bounded(t, 10*time.Second)
	go func() { _, err := w.Wait(ctx, ids[0]); errs <- err }()
	go func() { _, err := w.WaitAll(ctx, ids); errs <- err }()
	go func() { _, err := w.WaitAny(ctx, ids); errs <- err }()
	eventually(t, "waiters", func() bool { return w.Stats().Waiters == 5 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, jobwatch.ErrClosed) {
			t.Errorf("pending wait returned %v, want ErrClosed", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.Wait(ctx, ids[0]); !errors.Is(err, jobwatch.ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
	if n := b.Counters().ActiveSubscriptions; n != 0 {
		t.Errorf("%d subscriptions left open", n)
	}
}

// A driver whose Next ignores both ctx and Close cannot hang Close.
func TestCloseIsBoundedWithStuckDriver(t *testing.T) {
	stuck := &stuckDriver{release: make(chan struct{})}
	t.Cleanup(func() { close(stuck.release) })
	w, err := jobwatch.New(stuck, jobwatch.WithCloseTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "listening", func() bool { return w.Stats().Listening })
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "still busy") {
		t.Fatalf("Close = %v, want a bounded-close error", err)
	}
}

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
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0), jobwatch.WithNotFoundGrace(20*time.Millisecond))
	ids := mustEnqueue(t, b, 3)
	mustApply(t, b, succeed, ids[0])
	mustApply(t, b, []statemachine.Event{statemachine.Cancel}, ids[1])
	mustApply(t, b, []statemachine.Event{statemachine.Claim, statemachine.Error}, ids[2])
	in := []jobwatch.JobID{ids[2], ids[0], 999, ids[2], ids[1]}
	got, err := w.WaitAll(bounded(t, 5*time.Second), in)
	var nf *jobwatch.NotFoundError
	if !errors.As(err, &nf) || len(nf.IDs) != 1 || nf.IDs[0] != 999 {
		t.Fatalf("err = %v, want not found 999", err)
	}
	want := []statemachine.State{statemachine.Exception, statemachine.Successful, statemachine.None, statemachine.Exception, statemachine.Canceled}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestWaitAnyFreesTheRest(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0))
	ids := mustEnqueue(t, b, 50)
	ctx := bounded(t, 10*time.Second)
	res := make(chan jobwatch.Status, 1)
	go func() { st, _ := w.WaitAny(ctx, ids); res <- st }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 50 })
	mustApply(t, b, hold, ids[10]) // held does not settle
	mustApply(t, b, []statemachine.Event{statemachine.Delete}, ids[30])
	got := <-res
	if got.ID != ids[30] || got.State != statemachine.Deleted {
		t.Fatalf("WaitAny = %v", got)
	}
	if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
		t.Errorf("WaitAny left waits behind: %+v", s)
	}
}

func TestSettleOnHold(t *testing.T) {
	b := newFake(t)
	ids := mustEnqueue(t, b, 1)
	mustApply(t, b, hold, ids[0])
	strict := newWatcher(t, b, jobwatch.WithDebounce(0))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := strict.Wait(ctx, ids[0]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("held job ended a wait without settle-on-hold: %v", err)
	}
	lax := newWatcher(t, b, jobwatch.WithDebounce(0), jobwatch.WithSettleOnHold(true))
	if st, err := lax.Wait(bounded(t, 5*time.Second), ids[0]); err != nil || st != statemachine.Failed {
		t.Errorf("settle-on-hold Wait = %s, %v", st, err)
	}
}

// Many waits on one job share one entry and start no goroutine.
func TestWaitsStartNoGoroutines(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0))
	ids := mustEnqueue(t, b, 1000)
	listening(t, w)
	base := runtime.NumGoroutine()
	ctx := bounded(t, 10*time.Second)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = w.Wait(ctx, id) }()
	}
	eventually(t, "1000 pending", func() bool { return w.Stats().Pending == 1000 })
	if extra := runtime.NumGoroutine() - base - 1000; extra > 2 {
		t.Errorf("%d goroutines beyond the callers'", extra)
	}
	mustApply(t, b, succeed, ids...)
	wg.Wait()
}

func TestBatchSizeSplitsReads(t *testing.T) {
	b := newFake(t)
	ids := mustEnqueue(t, b, 10)
	mustApply(t, b, succeed, ids...)
	w := newWatcher(t, b, jobwatch.WithPollOnly(), jobwatch.WithDebounce(time.Millisecond), jobwatch.WithBatchSize(3),
		jobwatch.WithChangeFeed(false))
	if _, err := w.WaitAll(bounded(t, 5*time.Second), ids); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Reads.Total() != 4 || s.IDsRead != 10 {
		t.Errorf("reads = %d, ids = %d; want 4 batches carrying 10 ids", s.Reads.Total(), s.IDsRead)
	}
}

// Within a debounce window, notifications only gather: no read runs until
// the window ends, however many arrive.
func TestDebounceGathersNotifications(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(time.Hour))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	go func() { _, _ = w.Wait(ctx, ids[0]) }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 1 })
	before := w.Stats()
	for i := range uint64(20) {
		b.Notify(`{"type":"table_changed_event","table":"pgqueuer"}`)
		eventually(t, "notification consumed", func() bool { return w.Stats().Notifications == before.Notifications+i+1 })
	}
	if s := w.Stats(); s.Reads.Total() != before.Reads.Total() {
		t.Errorf("%d reads inside one debounce window", s.Reads.Total()-before.Reads.Total())
	}
}

// A flood of Resyncs (a subscription whose buffer keeps overflowing) costs
// one read per debounce window, not one per Resync.
func TestResyncFloodIsRateLimited(t *testing.T) {
	b := newFake(t)
	d := &scripted{Backend: b, notes: make(chan jobwatch.Notification)}
	w := newWatcher(t, d, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(time.Hour),
		jobwatch.WithChangeFeed(false))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	ctx := bounded(t, 10*time.Second)
	go func() { _, _ = w.Wait(ctx, ids[0]) }()
	eventually(t, "pending", func() bool { return w.Stats().Pending == 1 })
	for range 20 {
		d.notes <- jobwatch.Notification{Resync: true}
	}
	eventually(t, "first resync read", func() bool { return w.Stats().Reads.Resync == 1 })
	eventually(t, "all consumed", func() bool { return w.Stats().Notifications == 20 })
	if r := w.Stats().Reads; r.Total() != 1 {
		t.Errorf("reads = %+v for 20 resyncs in one window, want 1", r)
	}
}

func TestWaitEachYieldsInSettleOrder(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0))
	ids := mustEnqueue(t, b, 3)
	mustApply(t, b, succeed, ids[2])
	ctx := bounded(t, 10*time.Second)
	var got []jobwatch.Status
	for st, err := range w.WaitEach(ctx, []jobwatch.JobID{ids[0], ids[1], ids[0], ids[2]}) {
		if err != nil {
			t.Fatalf("WaitEach: %v", err)
		}
		got = append(got, st)
		switch len(got) { // settle the next one only now, to fix the order
		case 1:
			mustApply(t, b, []statemachine.Event{statemachine.Cancel}, ids[0])
		case 2:
			mustApply(t, b, []statemachine.Event{statemachine.Delete}, ids[1])
		}
	}
	want := []jobwatch.Status{{ID: ids[2], State: statemachine.Successful}, {ID: ids[0], State: statemachine.Canceled}, {ID: ids[1], State: statemachine.Deleted}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestWaitEachReportsNotFoundAndStopsEarly(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithDebounce(0), jobwatch.WithNotFoundGrace(0))
	ids := mustEnqueue(t, b, 2)
	ctx := bounded(t, 10*time.Second)
	var pairs int
	for st, err := range w.WaitEach(ctx, []jobwatch.JobID{777, ids[0], ids[1]}) {
		pairs++
		if !errors.Is(err, jobwatch.ErrNotFound) || st.ID != 777 {
			t.Fatalf("first pair = %v, %v; want 777 not found", st, err)
		}
		break
	}
	if s := w.Stats(); pairs != 1 || s.Pending != 0 || s.Waiters != 0 {
		t.Errorf("after break: %d pairs, stats %+v", pairs, s)
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	var last error
	for _, err := range w.WaitEach(short, ids) {
		last = err
	}
	if !errors.Is(last, context.DeadlineExceeded) {
		t.Errorf("last pair error = %v, want the ctx's", last)
	}
	for _, err := range w.WaitEach(ctx, nil) {
		if !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("empty list: %v", err)
		}
	}
}

// A read that never answers (a silently dead connection) is abandoned at
// the call timeout and retried, instead of stalling the Watcher.
func TestStuckReadTimesOut(t *testing.T) {
	b := newFake(t)
	ids := mustEnqueue(t, b, 1)
	mustApply(t, b, succeed, ids[0])
	d := &stuckOnce{Backend: b}
	w := newWatcher(t, d, jobwatch.WithPollOnly(), jobwatch.WithChangeFeed(false),
		jobwatch.WithCallTimeout(20*time.Millisecond), jobwatch.WithBackoff(time.Millisecond, 5*time.Millisecond))
	st, err := w.Wait(bounded(t, 10*time.Second), ids[0])
	if err != nil || st != statemachine.Successful {
		t.Fatalf("Wait = %s, %v", st, err)
	}
	if s := w.Stats(); s.ReadErrors != 1 || !errors.Is(s.LastError, context.DeadlineExceeded) {
		t.Errorf("stats = %+v, want one read abandoned at the call timeout", s)
	}
}

// stuckOnce's first status read blocks until its ctx ends.
type stuckOnce struct {
	*fake.Backend
	calls atomic.Int32
}

func (s *stuckOnce) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if s.calls.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Backend.FetchStatuses(ctx, ids)
}
