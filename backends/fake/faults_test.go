package fake

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/notify"
	"github.com/jobwatch/jobwatch/statemachine"
)

// TestCommitFaults: DropNotifications and DuplicateNotifications change how
// many times the next n commits are delivered.
func TestCommitFaults(t *testing.T) {
	tests := []struct {
		name  string
		setup func(b *Backend)
		want  []int // deliveries per subscription of each of 4 commits
	}{
		{"none", func(*Backend) {}, []int{1, 1, 1, 1}},
		{"drop 2", func(b *Backend) { b.DropNotifications(2) }, []int{0, 0, 1, 1}},
		{"drop cancelled", func(b *Backend) { b.DropNotifications(2); b.DropNotifications(0) }, []int{1, 1, 1, 1}},
		{"drop negative", func(b *Backend) { b.DropNotifications(-1) }, []int{1, 1, 1, 1}},
		{"duplicate 3", func(b *Backend) { b.DuplicateNotifications(3) }, []int{2, 2, 2, 1}},
		{"duplicate replaced", func(b *Backend) { b.DuplicateNotifications(3); b.DuplicateNotifications(1) }, []int{2, 1, 1, 1}},
		{"drop wins, then duplicate", func(b *Backend) { b.DropNotifications(1); b.DuplicateNotifications(2) }, []int{0, 2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, WithNotifyIDs())
			subs := []jobwatch.Subscription{listen(t, b), listen(t, b)}
			tt.setup(b)
			// A failed write is not a commit and uses up no fault.
			wantErr(t, b.Apply(testCtx(t), statemachine.Claim, 42), ErrUnknownJob)
			var total uint64
			for _, times := range tt.want {
				ids := enqueue(t, b, 1)
				for _, s := range subs {
					for range times {
						if n := next(t, s); !slices.Equal(n.IDs, ids) {
							t.Fatalf("got %+v, want a notification for %v", n, ids)
						}
					}
					assertEmpty(t, s)
				}
				total += uint64(times * len(subs))
			}
			if c := b.Counters(); c.NotificationsSent != total || c.Commits != uint64(len(tt.want)) {
				t.Fatalf("counters %+v, want %d sent, %d commits", c, total, len(tt.want))
			}
		})
	}
}

func TestDelayNotifications(t *testing.T) {
	const d = 30 * time.Millisecond
	b := newBackend(t, WithNotifyIDs())
	s := listen(t, b)
	b.DelayNotifications(d)
	start := time.Now()
	ids := enqueue(t, b, 1)
	if n := next(t, s); !slices.Equal(n.IDs, ids) {
		t.Fatalf("got %+v", n)
	}
	if elapsed := time.Since(start); elapsed < d {
		t.Fatalf("delivered after %v, want at least %v", elapsed, d)
	}
	// The change was visible long before.
	b.DelayNotifications(0)
	expectMarker(t, b, s)
	b.DelayNotifications(-time.Second) // same as 0
	expectMarker(t, b, s)
}

// TestDelayCancelled: pending delayed deliveries die with their
// subscription, whichever way it ends; goleak checks no timer goroutine
// survives.
func TestDelayCancelled(t *testing.T) {
	tests := []struct {
		name    string
		end     func(b *Backend, s jobwatch.Subscription)
		wantErr error
	}{
		{"subscription closed", func(_ *Backend, s jobwatch.Subscription) { s.Close() }, ErrSubscriptionClosed},
		{"disconnect", func(b *Backend, _ jobwatch.Subscription) { b.Disconnect() }, ErrDisconnected},
		{"backend closed", func(b *Backend, _ jobwatch.Subscription) { b.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			s := listen(t, b)
			b.DelayNotifications(time.Hour)
			b.DuplicateNotifications(1)
			enqueue(t, b, 1)
			enqueue(t, b, 1)
			if n := pending(s); n != 3 {
				t.Fatalf("%d deliveries pending, want 3", n)
			}
			tt.end(b, s)
			assertEmpty(t, s)
			_, err := s.Next(testCtx(t))
			wantErr(t, err, tt.wantErr)
			if c := b.Counters(); c.NotificationsSent != 0 {
				t.Fatalf("NotificationsSent = %d", c.NotificationsSent)
			}
		})
	}
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		deliver bool
	}{
		{"table changed", `{"channel":"ch_pgqueuer","operation":"update","sent_at":"2024-01-01T00:00:00Z","table":"pgqueuer","type":"table_changed_event"}`, true},
		{"table changed, minimal", `{"type":"table_changed_event"}`, true},
		{"cancellation", `{"type":"cancellation_event","ids":[1,2]}`, false},
		{"health check", `{"type":"health_check_event","id":"abc"}`, false},
		{"foreign type", `{"type":"something_else","x":1}`, false},
		{"not json", `hello`, false},
		{"empty", ``, false},
		{"null", `null`, false},
		{"no type", `{"table":"pgqueuer"}`, false},
		{"bad field", `{"type":"table_changed_event","operation":[]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, WithNotifyIDs())
			s := listen(t, b)
			b.DropNotifications(1) // commit faults do not apply to Notify
			b.Notify(tt.payload)
			var wantIgnored uint64
			if tt.deliver {
				if n := next(t, s); n.Resync || n.IDs != nil {
					t.Fatalf("got %+v, want an empty hint", n)
				}
			} else {
				wantIgnored = 1
			}
			assertEmpty(t, s)
			if got := s.(jobwatch.IgnoredCounter).Ignored(); got != wantIgnored {
				t.Fatalf("Ignored = %d, want %d", got, wantIgnored)
			}
			if c := b.Counters(); c.Commits != 0 {
				t.Fatalf("Notify counted as a commit: %+v", c)
			}
		})
	}
}

func TestInjectGarbage(t *testing.T) {
	for i := range 100 {
		if _, err := notify.Parse(garbage(i)); !errors.Is(err, notify.ErrMalformed) {
			t.Fatalf("garbage(%d) = %q parses: %v", i, garbage(i), err)
		}
	}
	tests := []struct {
		n    int
		want uint64
	}{{0, 0}, {-1, 0}, {1, 1}, {40, 40}}
	for _, tt := range tests {
		b := newBackend(t, WithNotifyIDs())
		subs := []jobwatch.Subscription{listen(t, b), listen(t, b)}
		b.InjectGarbage(tt.n)
		for _, s := range subs {
			if got := s.(jobwatch.IgnoredCounter).Ignored(); got != tt.want {
				t.Fatalf("InjectGarbage(%d): Ignored = %d, want %d", tt.n, got, tt.want)
			}
			assertEmpty(t, s)
		}
		expectMarker(t, b, subs[0])
		if c := b.Counters(); c.NotificationsSent != 2 {
			t.Fatalf("InjectGarbage(%d): NotificationsSent = %d, want 2 (the marker)", tt.n, c.NotificationsSent)
		}
	}
}

func TestFailReads(t *testing.T) {
	errCustom := errors.New("custom")
	tests := []struct {
		name    string
		n       int
		err     error
		wantErr error
		fails   int
	}{
		{"default error", 2, nil, ErrInjected, 2},
		{"custom error", 1, errCustom, errCustom, 1},
		{"zero", 0, nil, nil, 0},
		{"negative", -2, nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			ids := enqueue(t, b, 1)
			b.FailReads(tt.n, tt.err)
			ctx := testCtx(t)
			// Empty reads touch nothing and use up no failure.
			if got, err := b.FetchStatuses(ctx, nil); err != nil || len(got) != 0 {
				t.Fatalf("empty read: %v, %v", got, err)
			}
			for i := range tt.fails {
				got, err := b.FetchStatuses(ctx, ids)
				wantErr(t, err, tt.wantErr)
				if got != nil {
					t.Fatalf("failed read %d returned %v", i, got)
				}
			}
			if got, err := b.FetchStatuses(ctx, ids); err != nil || len(got) != 1 {
				t.Fatalf("read after the failures: %v, %v", got, err)
			}
			c := b.Counters()
			if c.Reads != uint64(tt.fails+1) || c.IDsRead != 1 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

func TestFailListens(t *testing.T) {
	errCustom := errors.New("custom")
	tests := []struct {
		name    string
		n       int
		err     error
		wantErr error
		fails   int
	}{
		{"default error", 3, nil, ErrInjected, 3},
		{"custom error", 1, errCustom, errCustom, 1},
		{"zero", 0, errCustom, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			b.FailListens(tt.n, tt.err)
			for range tt.fails {
				s, err := b.Listen(testCtx(t))
				wantErr(t, err, tt.wantErr)
				if s != nil {
					t.Fatal("failed Listen returned a subscription")
				}
			}
			s := listen(t, b)
			enqueue(t, b, 1)
			next(t, s)
			if c := b.Counters(); c.Listens != uint64(tt.fails+1) || c.ActiveSubscriptions != 1 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

func TestDisconnect(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	subs := []jobwatch.Subscription{listen(t, b), listen(t, b)}
	enqueue(t, b, 2) // buffered, then lost
	blocked := make(chan error, 1)
	go func() {
		// Drain the buffered notification, then block until the loss.
		if _, err := subs[1].Next(context.Background()); err != nil {
			blocked <- err
			return
		}
		_, err := subs[1].Next(context.Background())
		blocked <- err
	}()
	b.Disconnect()
	_, err := subs[0].Next(testCtx(t))
	wantErr(t, err, ErrDisconnected)
	wantErr(t, <-blocked, ErrDisconnected)
	_, err = subs[0].Next(testCtx(t)) // stays dead
	wantErr(t, err, ErrDisconnected)
	if c := b.Counters(); c.ActiveSubscriptions != 0 {
		t.Fatalf("ActiveSubscriptions = %d after Disconnect", c.ActiveSubscriptions)
	}
	enqueue(t, b, 1) // reaches nobody
	for _, s := range subs {
		assertEmpty(t, s)
		if err := s.Close(); err != nil {
			t.Fatalf("Close after Disconnect: %v", err)
		}
		_, err := s.Next(testCtx(t))
		wantErr(t, err, ErrSubscriptionClosed)
	}
	b.Disconnect() // nobody to disconnect: harmless

	// Listening again works; the change made while disconnected is only
	// found by reading.
	s := listen(t, b)
	got, err := b.FetchStatuses(testCtx(t), []jobwatch.JobID{3})
	if err != nil || len(got) != 1 {
		t.Fatalf("read after reconnect: %v, %v", got, err)
	}
	expectMarker(t, b, s)
}

func TestBlockReads(t *testing.T) {
	t.Run("snapshot at start, release", func(t *testing.T) {
		b := newBackend(t)
		ids := enqueue(t, b, 1)
		release := b.BlockReads()
		type result struct {
			st  []jobwatch.Status
			err error
		}
		done := make(chan result, 1)
		go func() {
			st, err := b.FetchStatuses(context.Background(), ids)
			done <- result{st, err}
		}()
		if err := b.WaitReads(testCtx(t), 1); err != nil {
			t.Fatalf("WaitReads: %v", err)
		}
		apply(t, b, statemachine.Claim, ids...) // while the read is in flight
		release()
		release() // idempotent
		r := <-done
		if r.err != nil || len(r.st) != 1 || r.st[0].State != statemachine.Queued {
			t.Fatalf("blocked read = %v, %v; want the snapshot [1 queued]", r.st, r.err)
		}
		if got, err := b.FetchStatuses(testCtx(t), ids); err != nil || got[0].State != statemachine.Picked {
			t.Fatalf("read after release = %v, %v", got, err)
		}
	})
	t.Run("ctx", func(t *testing.T) {
		b := newBackend(t)
		ids := enqueue(t, b, 1)
		release := b.BlockReads()
		defer release()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := b.FetchStatuses(ctx, ids); errc <- err }()
		if err := b.WaitReads(testCtx(t), 1); err != nil {
			t.Fatalf("WaitReads: %v", err)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked read after cancel = %v", err)
		}
	})
	t.Run("overlapping holds", func(t *testing.T) {
		b := newBackend(t)
		ids := enqueue(t, b, 1)
		r1, r2 := b.BlockReads(), b.BlockReads()
		errc := make(chan error, 1)
		go func() { _, err := b.FetchStatuses(context.Background(), ids); errc <- err }()
		if err := b.WaitReads(testCtx(t), 1); err != nil {
			t.Fatalf("WaitReads: %v", err)
		}
		r1()
		r1() // a second release of the same hold frees nothing
		select {
		case err := <-errc:
			t.Fatalf("read returned (%v) while a hold remained", err)
		default:
		}
		r2()
		if err := <-errc; err != nil {
			t.Fatalf("read after both releases: %v", err)
		}
		// A new hold blocks again.
		r3 := b.BlockReads()
		go func() { _, err := b.FetchStatuses(context.Background(), ids); errc <- err }()
		if err := b.WaitReads(testCtx(t), 2); err != nil {
			t.Fatalf("WaitReads: %v", err)
		}
		r3()
		if err := <-errc; err != nil {
			t.Fatalf("read: %v", err)
		}
	})
}
