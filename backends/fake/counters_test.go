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

func TestCounters(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	s1 := listen(t, b)
	listen(t, b)
	ids := enqueue(t, b, 10)
	apply(t, b, statemachine.Claim, ids[:3]...)     // a commit that notifies nobody
	_ = b.Apply(ctx, statemachine.Complete, ids[5]) // illegal: no commit
	for _, read := range [][]jobwatch.JobID{ids, ids[:2], {ids[0], ids[0], 999}, nil} {
		if _, err := b.FetchStatuses(ctx, read); err != nil {
			t.Fatalf("FetchStatuses: %v", err)
		}
	}
	s1.Close()

	want := Counters{Reads: 3, IDsRead: 15, Listens: 2, ActiveSubscriptions: 1, Commits: 2, NotificationsSent: 2}
	if got := b.Counters(); got != want {
		t.Fatalf("Counters = %+v, want %+v", got, want)
	}
	b.ResetCounters()
	if got := b.Counters(); got != (Counters{ActiveSubscriptions: 1}) {
		t.Fatalf("after ResetCounters = %+v", got)
	}
}

func TestWaitReads(t *testing.T) {
	b := newBackend(t)
	ids := enqueue(t, b, 1)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = b.FetchStatuses(ctx, ids)
		}()
	}
	if err := b.WaitReads(ctx, 5); err != nil {
		t.Fatalf("WaitReads: %v", err)
	}
	wg.Wait()
	if err := b.WaitReads(ctx, 0); err != nil {
		t.Fatalf("WaitReads(0): %v", err)
	}

	b.ResetCounters()
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := b.WaitReads(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReads after reset = %v, want DeadlineExceeded", err)
	}
	var nilCtx context.Context
	if err := b.WaitReads(nilCtx, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("WaitReads(nil ctx) = %v", err)
	}

	errc := make(chan error, 1)
	go func() { errc <- b.WaitReads(context.Background(), 1) }()
	b.Close()
	// Either the waiter saw the Backend closed, or it had not started yet
	// and sees it closed now; both end with ErrClosed.
	wantErr(t, <-errc, ErrClosed)
}

func TestWaitListening(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	subs := make(chan jobwatch.Subscription, 3)
	for range 3 {
		go func() {
			s, err := b.Listen(ctx)
			if err != nil {
				t.Errorf("Listen: %v", err)
			}
			subs <- s
		}()
	}
	if err := b.WaitListening(ctx, 3); err != nil {
		t.Fatalf("WaitListening: %v", err)
	}
	for range 3 {
		if s := <-subs; s != nil {
			s.Close()
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := b.WaitListening(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitListening with nobody listening = %v", err)
	}
	if err := b.WaitListening(ctx, 0); err != nil {
		t.Fatalf("WaitListening(0) = %v", err)
	}
}
