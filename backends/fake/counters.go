package fake

import (
	"context"
	"fmt"
)

// Counters is a snapshot of what a Backend has done since New or the last
// ResetCounters.
type Counters struct {
	// Reads counts FetchStatuses calls with at least one id, from the
	// moment they start (failed, blocked and cancelled ones included).
	Reads uint64
	// IDsRead sums len(ids), duplicates and unknown ids included, over the
	// reads that took their snapshot (not those failed by FailReads).
	IDsRead uint64
	// FeedReads counts Changes calls (they count in Reads too), and
	// ChangesRead the statuses they returned.
	FeedReads, ChangesRead uint64
	// Listens counts Listen calls that got past the ctx check, including
	// those failed by FailListens.
	Listens uint64
	// ActiveSubscriptions is how many subscriptions are live now (not
	// closed or disconnected). It is a gauge: ResetCounters keeps it.
	ActiveSubscriptions int
	// Commits counts committed writes that changed a job's state (not
	// heartbeats).
	Commits uint64
	// NotificationsSent counts notifications handed to a live
	// subscription, one per subscription per delivery (duplicates twice,
	// Notify's table_changed_event payloads included), whether buffered or
	// collapsed into a Resync.
	NotificationsSent uint64
	// Collapsed counts the notifications among NotificationsSent that
	// found a full buffer and were folded into a pending Resync.
	Collapsed uint64
}

type counts struct {
	reads, idsRead, listens, commits, feedReads, changesRead uint64
}

// Counters returns a snapshot of the counters. It never blocks for long
// and works after Close.
func (b *Backend) Counters() Counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Counters{
		Reads:               b.counts.reads,
		IDsRead:             b.counts.idsRead,
		Listens:             b.counts.listens,
		ActiveSubscriptions: len(b.subs),
		Commits:             b.counts.commits,
		FeedReads:           b.counts.feedReads,
		ChangesRead:         b.counts.changesRead,
		NotificationsSent:   b.sent.Load(),
		Collapsed:           b.collapsed.Load(),
	}
}

// ResetCounters sets every counter except the ActiveSubscriptions gauge to
// zero. WaitReads then counts from zero again. It never blocks for long.
func (b *Backend) ResetCounters() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts = counts{}
	b.sent.Store(0)
	b.collapsed.Store(0)
	b.broadcastLocked()
}

// WaitReads blocks until Counters().Reads >= n, so a test can wait for a
// read (for example one held by BlockReads) without sleeping. It returns
// nil then, ctx.Err() when ctx is done first, and an error matching
// ErrClosed once the Backend is closed with the count not reached.
func (b *Backend) WaitReads(ctx context.Context, n uint64) error {
	return b.waitFor(ctx, "reads", func() bool { return b.counts.reads >= n })
}

// WaitListening blocks until at least n subscriptions are live, so a test
// can wait for the code under test to Listen. It returns nil then,
// ctx.Err() when ctx is done first, and an error matching ErrClosed once
// the Backend is closed with the count not reached (n <= 0 returns nil at
// once, closed or not).
func (b *Backend) WaitListening(ctx context.Context, n int) error {
	return b.waitFor(ctx, "listening", func() bool { return len(b.subs) >= n })
}

// waitFor blocks until cond, evaluated under b.mu, holds.
func (b *Backend) waitFor(ctx context.Context, what string, cond func() bool) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	for {
		b.mu.Lock()
		if cond() {
			b.mu.Unlock()
			return nil
		}
		if b.closed {
			b.mu.Unlock()
			return fmt.Errorf("fake: wait %s: %w", what, ErrClosed)
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
