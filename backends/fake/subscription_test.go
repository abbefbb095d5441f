package fake

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestListen(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	var nilCtx context.Context
	tests := []struct {
		name        string
		ctx         context.Context
		wantErr     error
		wantListens uint64
	}{
		{"live ctx", context.Background(), nil, 1},
		{"canceled ctx", canceled, context.Canceled, 0},
		{"nil ctx", nilCtx, ErrInvalidArgument, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			s, err := b.Listen(tt.ctx)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
				if s != nil {
					t.Fatalf("failed Listen returned a subscription")
				}
			} else {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				defer s.Close()
				if _, ok := s.(jobwatch.IgnoredCounter); !ok {
					t.Fatal("subscription does not implement jobwatch.IgnoredCounter")
				}
			}
			if c := b.Counters(); c.Listens != tt.wantListens || c.ActiveSubscriptions != int(tt.wantListens) {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

// TestListenThenCommit: a commit made after Listen returns is delivered.
func TestListenThenCommit(t *testing.T) {
	b := newBackend(t)
	for i := range 50 {
		s := listen(t, b)
		enqueue(t, b, 1)
		if n := next(t, s); n.Resync {
			t.Fatalf("round %d: got %+v", i, n)
		}
		s.Close()
	}
}

func TestNextCtx(t *testing.T) {
	b := newBackend(t)
	s := listen(t, b)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	enqueue(t, b, 1) // buffered, yet a done ctx wins
	if _, err := s.Next(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next(done ctx) = %v, want context.Canceled", err)
	}
	var nilCtx context.Context
	if _, err := s.Next(nilCtx); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Next(nil) = %v, want ErrInvalidArgument", err)
	}
	next(t, s) // the notification is still there

	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := s.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an idle subscription = %v, want DeadlineExceeded", err)
	}

	ctx, cancel3 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := s.Next(ctx); errc <- err }()
	cancel3()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel = %v, want context.Canceled", err)
	}
	// The subscription survives ctx errors.
	enqueue(t, b, 1)
	next(t, s)
}

func TestCloseWhileNextBlocked(t *testing.T) {
	b := newBackend(t)
	s := listen(t, b)
	errc := make(chan error, 1)
	go func() { _, err := s.Next(context.Background()); errc <- err }()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantErr(t, <-errc, ErrSubscriptionClosed)

	// Idempotent, also concurrently, and Next keeps failing the same way.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Close(); err != nil {
				t.Errorf("Close again: %v", err)
			}
		}()
	}
	wg.Wait()
	_, err := s.Next(testCtx(t))
	wantErr(t, err, ErrSubscriptionClosed)
	if c := b.Counters(); c.ActiveSubscriptions != 0 {
		t.Fatalf("ActiveSubscriptions = %d after Close", c.ActiveSubscriptions)
	}
	enqueue(t, b, 1) // delivers to nobody
	if c := b.Counters(); c.NotificationsSent != 0 {
		t.Fatalf("NotificationsSent = %d to a closed subscription", c.NotificationsSent)
	}
}

// TestOverflow: writers never block; the overflow collapses into one
// Resync, delivered after the buffered notifications.
func TestOverflow(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		buffer  int
		commits int
	}{
		{"default buffer, 10000 commits", nil, DefaultBuffer, 10000},
		{"buffer 4", []Option{WithBuffer(4)}, 4, 100},
		{"buffer 0 means 1", []Option{WithBuffer(0)}, 1, 10},
		{"negative buffer means 1", []Option{WithBuffer(-5), nil}, 1, 10},
		{"exactly full", []Option{WithBuffer(8)}, 8, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, tt.opts...)
			s := listen(t, b)
			for range tt.commits {
				enqueue(t, b, 1) // nobody reads: must not block
			}
			for i := range tt.buffer {
				if n := next(t, s); n.Resync {
					t.Fatalf("notification %d is a Resync, want a plain hint", i)
				}
			}
			overflow := tt.commits > tt.buffer
			if overflow {
				if n := next(t, s); !n.Resync {
					t.Fatalf("after %d hints got %+v, want one Resync", tt.buffer, n)
				}
			}
			assertEmpty(t, s)
			c := b.Counters()
			if c.NotificationsSent != uint64(tt.commits) || c.Collapsed != uint64(max(tt.commits-tt.buffer, 0)) {
				t.Fatalf("counters %+v", c)
			}
			// Delivery resumes normally.
			enqueue(t, b, 1)
			if n := next(t, s); n.Resync {
				t.Fatalf("after draining got %+v", n)
			}
		})
	}
}

// TestOverflowWhileReading: the Resync takes the first free slot, and
// later notifications queue behind it.
func TestOverflowWhileReading(t *testing.T) {
	b := newBackend(t, WithBuffer(2), WithNotifyIDs())
	s := listen(t, b)
	for range 5 {
		enqueue(t, b, 1)
	}
	if n := next(t, s); n.Resync || n.IDs[0] != 1 {
		t.Fatalf("got %+v, want job 1", n)
	}
	enqueue(t, b, 1) // job 6: the buffer is [2, Resync] and full again
	if c := b.Counters(); c.Collapsed != 4 {
		t.Fatalf("Collapsed = %d, want 4", c.Collapsed)
	}
	if n := next(t, s); n.Resync || n.IDs[0] != 2 {
		t.Fatalf("got %+v, want job 2", n)
	}
	// The buffered Resync covers job 6 too: only one is delivered.
	if n := next(t, s); !n.Resync {
		t.Fatalf("got %+v, want Resync", n)
	}
	assertEmpty(t, s)
	expectMarker(t, b, s)
}

func TestBackendClose(t *testing.T) {
	b := New()
	s, err := b.Listen(testCtx(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ids := enqueue(t, b, 1)
	b.DelayNotifications(time.Hour)
	enqueue(t, b, 1) // a timer Close must stop
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		if err == nil { // the buffered notification
			_, err = s.Next(context.Background())
		}
		errc <- err
	}()
	release := b.BlockReads()
	defer release()
	readErr := make(chan error, 1)
	go func() { _, err := b.FetchStatuses(context.Background(), ids); readErr <- err }()
	if err := b.WaitReads(testCtx(t), 1); err != nil {
		t.Fatalf("WaitReads: %v", err)
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = b.Close() }()
	}
	wg.Wait()
	wantErr(t, <-errc, ErrClosed)
	wantErr(t, <-readErr, ErrClosed)
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("subscription Close after backend Close: %v", err)
	}

	ctx := testCtx(t)
	_, err = b.Listen(ctx)
	wantErr(t, err, ErrClosed)
	_, err = b.FetchStatuses(ctx, ids)
	wantErr(t, err, ErrClosed)
	_, err = b.EnqueueN(ctx, 1)
	wantErr(t, err, ErrClosed)
	wantErr(t, b.Apply(ctx, statemachine.Claim, ids...), ErrClosed)
	wantErr(t, b.Tx(ctx, func(*Tx) error { return nil }), ErrClosed)
	wantErr(t, b.WaitReads(ctx, 100), ErrClosed)
	wantErr(t, b.WaitListening(ctx, 1), ErrClosed)
	if _, ok := b.State(ids[0]); !ok {
		t.Fatal("State forgot a job after Close")
	}
	// Fault controls are harmless after Close.
	b.Disconnect()
	b.Notify(`{"type":"table_changed_event"}`)
	b.InjectGarbage(3)
	if c := b.Counters(); c.ActiveSubscriptions != 0 {
		t.Fatalf("ActiveSubscriptions = %d after Close", c.ActiveSubscriptions)
	}
}
