package jobwatch_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

const changed = `{"type":"table_changed_event","table":"pgqueuer"}`

// Invariant 4: notifications arriving during a read, and within one
// debounce window, coalesce into one more read.
func TestNotificationBurstCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t, fake.WithBuffer(4096))
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(20*time.Millisecond),
			jobwatch.WithChangeFeed(false))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		got := goWait(w, context.Background(), ids[0])
		advance(time.Second)
		before := b.Counters().Reads
		release := b.BlockReads()
		b.Notify(changed)
		advance(20 * time.Millisecond) // the read starts and blocks
		for range 1000 {
			b.Notify(changed)
		}
		quiet()
		release()
		advance(time.Second)
		mustApply(t, b, succeed, ids[0])
		advance(time.Second)
		if r, ok := returned(got); !ok || r.state != statemachine.Successful {
			t.Fatalf("Wait = %v, %v", r, ok)
		}
		// the blocked read, one for the burst, one for the completion
		if reads := b.Counters().Reads - before; reads != 3 {
			t.Errorf("%d reads for 1,001 notifications and a completion, want 3", reads)
		}
	})
}

// Within a debounce window, notifications only gather: no read runs until
// the window ends, however many arrive.
func TestDebounceGathersNotifications(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(time.Minute),
			jobwatch.WithChangeFeed(false), jobwatch.WithFullReadInterval(hourly))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		goWait(w, context.Background(), ids[0])
		advance(time.Minute) // the wait's own read
		before := w.Stats()
		for range 20 {
			b.Notify(changed)
			advance(time.Second)
		}
		if s := w.Stats(); s.Reads.Total() != before.Reads.Total() || s.Notifications != before.Notifications+20 {
			t.Errorf("inside one window: %d reads for %d notifications, want none yet",
				s.Reads.Total()-before.Reads.Total(), s.Notifications-before.Notifications)
		}
		advance(time.Minute)
		if s := w.Stats(); s.Reads.Notification != 1 {
			t.Errorf("after the window: %d notification reads, want 1", s.Reads.Notification)
		}
	})
}

// A notification naming jobs makes the watcher read just those jobs.
func TestNotificationWithIDsReadsOnlyThoseIDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t, fake.WithNotifyIDs())
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(0))
		ids := mustEnqueue(t, b, 100)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		quiet()
		before := w.Stats().IDsRead
		mustApply(t, b, succeed, ids[7])
		quiet()
		if n := w.Stats().IDsRead - before; n < 1 || n > 2 { // one read for both commits, or one each
			t.Errorf("read %d ids after two notifications naming one job, want 1 or 2", n)
		}
		mustApply(t, b, succeed, append(append([]jobwatch.JobID{}, ids[:7]...), ids[8:]...)...)
		wait()
	})
}

// Invariant 6: a failing read retries with capped, jittered backoff, never
// in a loop, logs each failure, and recovers.
func TestReadFailuresBackOffAndRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, succeed, ids[0])
		b.FailReads(4, nil)
		var logs syncBuffer
		w := newWatcher(t, b, jobwatch.WithPollOnly(), jobwatch.WithRefreshInterval(hourly),
			jobwatch.WithDebounce(0), jobwatch.WithBackoff(time.Second, 4*time.Second),
			jobwatch.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		start := time.Now()
		st, err := w.Wait(context.Background(), ids[0])
		if err != nil || st != statemachine.Successful {
			t.Fatalf("Wait = %s, %v", st, err)
		}
		// 1, 2, 4 and 4 s with ±20% jitter, capped at 4 s: 8.8 to 11.6 s.
		if took := time.Since(start); took < 8800*time.Millisecond || took > 11600*time.Millisecond {
			t.Errorf("4 failures retried over %s, want 8.8 to 11.6 s of backoff", took)
		}
		s := w.Stats()
		if s.ReadErrors != 4 || s.Reads.Total() != 5 || !errors.Is(s.LastError, fake.ErrInjected) {
			t.Errorf("stats = %+v, want 4 errors then a good read", s)
		}
		if n := strings.Count(logs.String(), "status read failed"); n != 4 {
			t.Errorf("logged %d failures, want 4:\n%s", n, logs.String())
		}
	})
}

// syncBuffer is a bytes.Buffer for a logger that several goroutines use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Invariant 3: after the subscription is lost, the watcher listens again
// and re-reads every pending job at once, without waiting for the poll.
func TestReconnectResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithBackoff(time.Second, time.Second))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		got := goWait(w, context.Background(), ids[0])
		advance(time.Second)
		b.Disconnect()
		b.FailListens(1, nil)
		mustApply(t, b, succeed, ids[0]) // lost: nobody listens
		advance(2*time.Second + time.Second*6/5)
		if r, ok := returned(got); !ok || r.state != statemachine.Successful {
			t.Fatalf("not resolved after the reconnect: %v %v", r, ok)
		}
		s := w.Stats()
		if s.Reconnects != 1 || s.Resolved.Resync != 1 || s.ListenErrors != 2 {
			t.Errorf("stats = %+v, want a reconnect whose read resolved the job", s)
		}
	})
}

// A Resync notification triggers a full read at once, debounce or not.
func TestResyncNotificationReadsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &scripted{Backend: b, notes: make(chan jobwatch.Notification)}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(time.Minute),
			jobwatch.WithFullReadInterval(hourly))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		got := goWait(w, context.Background(), ids[0])
		advance(time.Minute) // the wait's own read
		mustApply(t, b, succeed, ids[0])
		d.notes <- jobwatch.Notification{Resync: true}
		quiet()
		if r, ok := returned(got); !ok || r.state != statemachine.Successful {
			t.Fatalf("not resolved at once by the resync: %v %v", r, ok)
		}
		if r := w.Stats().Resolved; r.Resync != 1 {
			t.Errorf("resolved = %+v, want by resync", r)
		}
	})
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

// A flood of Resyncs (a subscription whose buffer keeps overflowing) costs
// at most one full read per debounce window.
func TestResyncFloodIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &scripted{Backend: b, notes: make(chan jobwatch.Notification)}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(time.Minute),
			jobwatch.WithChangeFeed(false), jobwatch.WithFullReadInterval(hourly))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		goWait(w, context.Background(), ids[0])
		advance(time.Minute)
		before := w.Stats().Reads
		for range 20 {
			d.notes <- jobwatch.Notification{Resync: true}
			advance(time.Second)
		}
		if r := w.Stats().Reads; r.Total()-before.Total() != 1 {
			t.Errorf("%d reads for 20 resyncs in one window, want 1", r.Total()-before.Total())
		}
		advance(time.Minute)
		if r := w.Stats().Reads; r.Total()-before.Total() != 2 {
			t.Errorf("%d reads after the window, want 2", r.Total()-before.Total())
		}
	})
}

func TestBatchSizeSplitsReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithBatchSize(10), jobwatch.WithPollOnly())
		ids := mustEnqueue(t, b, 95)
		mustApply(t, b, succeed, ids...)
		if _, err := w.WaitAll(context.Background(), ids); err != nil {
			t.Fatal(err)
		}
		if c := b.Counters(); c.Reads-c.FeedReads != 10 {
			t.Errorf("%d reads of 95 ids in batches of 10, want 10", c.Reads-c.FeedReads)
		}
	})
}

// A read that began before a wait was registered decides nothing for it:
// here it would have ruled the wait "not found" although its job exists.
func TestStaleReadDoesNotDecideNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithNotFoundGrace(0), jobwatch.WithDebounce(0), jobwatch.WithPollOnly())
		release := b.BlockReads()
		ctx1, cancel1 := context.WithCancel(context.Background())
		first := goWait(w, ctx1, 1) // its read blocks, without job 1
		quiet()
		cancel1()
		<-first
		mustEnqueue(t, b, 1) // job 1 now exists
		second := goWait(w, context.Background(), 1)
		quiet()
		release() // the old read returns: job 1 unknown
		quiet()
		if r, ok := returned(second); ok {
			t.Fatalf("a read from before the wait decided it: %v", r)
		}
		mustApply(t, b, succeed, 1)
		advance(hourly) // the poll
		if r, ok := returned(second); !ok || r.err != nil || r.state != statemachine.Successful {
			t.Fatalf("Wait = %v, %v", r, ok)
		}
	})
}

// The same for a held job: an old read's "failed" must not settle a newer
// wait with settle-on-hold once the job was requeued.
func TestStaleReadDoesNotSettleHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithSettleOnHold(true), jobwatch.WithDebounce(0), jobwatch.WithPollOnly(),
			jobwatch.WithRefreshInterval(hourly))
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, hold, ids[0])
		release := b.BlockReads()
		ctx1, cancel1 := context.WithCancel(context.Background())
		first := goWait(w, ctx1, ids[0]) // its read blocks, with "failed"
		quiet()
		cancel1()
		<-first
		mustApply(t, b, []statemachine.Event{statemachine.Requeue}, ids[0])
		second := goWait(w, context.Background(), ids[0])
		quiet()
		release()
		quiet()
		if r, ok := returned(second); ok {
			t.Fatalf("a stale failed settled the wait: %v", r)
		}
		mustApply(t, b, succeed, ids[0])
		advance(hourly)
		if r, ok := returned(second); !ok || r.state != statemachine.Successful {
			t.Fatalf("Wait = %v, %v", r, ok)
		}
	})
}
