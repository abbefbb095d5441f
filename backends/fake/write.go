package fake

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// MaxBatch is the largest n Enqueue accepts in one call.
const MaxBatch = 1 << 20

// Enqueue creates n queued jobs in one commit and returns their ids,
// ascending. Ids come from a sequence that starts at 1 and, like
// PostgreSQL's bigserial, is not rolled back: a rolled-back Tx leaves a gap.
// The commit notifies every live subscription once.
//
// It never blocks. It returns ctx.Err() when ctx is done, an error matching
// ErrInvalidArgument when n <= 0 or n > MaxBatch, and one matching ErrClosed
// after Close; then nothing changes.
func (b *Backend) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if err := checkCount(n); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("fake: enqueue: %w", ErrClosed)
	}
	ids := b.allocLocked(n)
	st := newStage(b.jobs)
	st.enqueue(ids)
	p := b.commitLocked(st)
	b.mu.Unlock()
	p.dispatch()
	return ids, nil
}

// Apply applies ev to each of ids, in order, in one commit that notifies
// every live subscription once. It is atomic: if any id is unknown (an
// error matching ErrUnknownJob) or ev is illegal for any id (the
// *statemachine.TransitionError, with ID set, matching
// statemachine.ErrIllegalTransition), nothing changes and nobody is
// notified. A duplicate id receives ev twice, which is always illegal.
//
// It never blocks. It returns ctx.Err() when ctx is done; an error matching
// ErrInvalidArgument for no ids or for Enqueue (use Enqueue), matching
// statemachine.ErrUnknownEvent too for an invalid event; and one matching
// ErrClosed after Close.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if err := checkApply(ev, ids); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("fake: %s: %w", ev, ErrClosed)
	}
	st := newStage(b.jobs)
	if err := st.apply(ev, ids); err != nil {
		b.mu.Unlock()
		return err
	}
	p := b.commitLocked(st)
	b.mu.Unlock()
	p.dispatch()
	return nil
}

// allocLocked hands out n fresh ids. b.mu is held.
func (b *Backend) allocLocked(n int) []jobwatch.JobID {
	ids := make([]jobwatch.JobID, n)
	for i := range ids {
		b.nextID++
		ids[i] = b.nextID
	}
	return ids
}

// commitLocked makes st visible and plans its notification: none when st
// changed nothing or DropNotifications is in effect, two deliveries per
// subscription while DuplicateNotifications is. b.mu is held; the caller
// dispatches the plan after unlocking, so notifications always follow
// visibility.
func (b *Backend) commitLocked(st *stage) delivery {
	if len(st.changed) == 0 {
		return delivery{}
	}
	st.commit()
	b.changelog = append(b.changelog, st.order...)
	b.counts.commits++
	times := b.faults.takeCommit()
	if times == 0 || len(b.subs) == 0 {
		return delivery{}
	}
	d := delivery{subs: b.liveSubsLocked(), times: times, delay: b.faults.delay}
	if b.cfg.notifyIDs {
		d.ids = slices.Clone(st.order)
	}
	return d
}

// delivery is one commit's notification, planned under Backend.mu and sent
// after it is released.
type delivery struct {
	subs  []*subscription
	ids   []jobwatch.JobID
	times int
	delay time.Duration
}

// dispatch sends the planned notification; it never blocks.
func (d delivery) dispatch() {
	for _, s := range d.subs {
		for range d.times {
			s.send(jobwatch.Notification{IDs: slices.Clone(d.ids)}, d.delay)
		}
	}
}

func checkCount(n int) error {
	if n <= 0 || n > MaxBatch {
		return fmt.Errorf("%w: enqueue of %d jobs (want 1..%d)", ErrInvalidArgument, n, MaxBatch)
	}
	return nil
}

func checkApply(ev statemachine.Event, ids []jobwatch.JobID) error {
	switch {
	case !ev.Valid():
		return fmt.Errorf("%w: %w: %s", ErrInvalidArgument, statemachine.ErrUnknownEvent, ev)
	case ev == statemachine.Enqueue:
		return fmt.Errorf("%w: enqueue through Apply (use Enqueue)", ErrInvalidArgument)
	case len(ids) == 0:
		return fmt.Errorf("%w: %s of no jobs", ErrInvalidArgument, ev)
	}
	return nil
}
