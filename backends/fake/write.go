package fake

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// MaxBatch is the largest n EnqueueN accepts in one call.
const MaxBatch = 1 << 20

// DefaultEntrypoint is the entrypoint of the jobs EnqueueN creates.
const DefaultEntrypoint = "fake"

// Enqueue implements queue.Queue: it creates jobs, queued, in one commit
// and returns their ids, ascending in input order. Ids come from a
// sequence that starts at 1 and, like PostgreSQL's bigserial, is not rolled
// back: a rolled-back Tx leaves a gap. The commit notifies every live
// subscription once.
//
// It never blocks. Jobs that queue.CheckJobs refuses return its error (an
// invalid job matches queue.ErrInvalidJob); a dedupe key held by a queued
// or picked job returns a *queue.DuplicateError naming the holder. It
// returns ctx.Err() when ctx is done and an error matching ErrClosed after
// Close. On error nothing changes.
func (b *Backend) Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if err := queue.CheckJobs(jobs); err != nil {
		return nil, fmt.Errorf("fake: enqueue: %w", err)
	}
	var ids []jobwatch.JobID
	err := b.write(ctx, "enqueue", func(st *stage) error {
		next := b.nextID
		fresh := make([]jobwatch.JobID, len(jobs))
		for i := range fresh {
			fresh[i] = next + jobwatch.JobID(i) + 1
		}
		if err := st.enqueue(fresh, jobs); err != nil {
			return err
		}
		ids = b.allocLocked(len(jobs))
		return nil
	}, nil)
	return ids, err
}

// EnqueueN creates n queued jobs of entrypoint DefaultEntrypoint, with no
// payload, in one commit, as Enqueue does: a shorthand for tests that only
// need ids. It returns an error matching ErrInvalidArgument when n <= 0 or
// n > MaxBatch, and Enqueue's errors otherwise.
func (b *Backend) EnqueueN(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if err := checkCount(n); err != nil {
		return nil, err
	}
	return b.Enqueue(ctx, defaultJobs(n)...)
}

func defaultJobs(n int) []queue.NewJob {
	jobs := make([]queue.NewJob, n)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: DefaultEntrypoint}
	}
	return jobs
}

// Apply applies ev to each of ids in one commit that notifies every live
// subscription once, with the rules of the PostgreSQL backends' Apply: it
// is atomic, and if any id is unknown (an error matching
// queue.ErrUnknownJob and statemachine.ErrIllegalTransition) or ev is
// illegal for it (the *statemachine.TransitionError, with ID set), nothing
// changes and nobody is notified. A repeated id counts once. The named
// methods (Complete, Cancel, ...) are Apply with their event; Claim and
// Exception also record a queue manager id and a traceback.
//
// It never blocks. It returns ctx.Err() when ctx is done; an error matching
// jobwatch.ErrInvalidID (and ErrInvalidArgument) for no ids or an id <= 0;
// one matching ErrInvalidArgument and statemachine.ErrIllegalTransition
// for Enqueue (use Enqueue) or an invalid event (which matches
// statemachine.ErrUnknownEvent too); and one matching ErrClosed after
// Close.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return b.apply(ctx, ev, ids, nil)
}

// apply is Apply, with tb logged by statemachine.Error.
func (b *Backend) apply(ctx context.Context, ev statemachine.Event, ids []jobwatch.JobID, tb *queue.Traceback) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if err := checkApply(ev, ids); err != nil {
		return err
	}
	return b.write(ctx, ev.String(), func(st *stage) error { return st.apply(ev, ids, tb) }, nil)
}

// write runs fn on a fresh stage under b.mu and commits what it staged,
// unless it fails, then runs after (if not nil), still under b.mu, to read
// what the commit wrote: the one path of every write outside a Tx. Its
// errors are prefixed with op.
func (b *Backend) write(ctx context.Context, op string, fn func(st *stage) error, after func()) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("fake: %s: %w", op, ErrClosed)
	}
	st := newStage(&b.store)
	if err := fn(st); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("fake: %s: %w", op, err)
	}
	p := b.commitLocked(st)
	if after != nil {
		after()
	}
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
// is not announced (it only claims, retries, requeues or heartbeats) or
// DropNotifications is in effect, two deliveries per subscription while
// DuplicateNotifications is. b.mu is
// held; the caller dispatches the plan after unlocking, so notifications
// always follow visibility.
func (b *Backend) commitLocked(st *stage) delivery {
	if st.empty() {
		return delivery{}
	}
	st.commit()
	if len(st.order) == 0 {
		return delivery{}
	}
	b.changelog = append(b.changelog, st.order...)
	b.counts.commits++
	if !st.announced() {
		return delivery{}
	}
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
		return fmt.Errorf("%w: %w", ErrInvalidArgument, &statemachine.TransitionError{Event: ev})
	case ev == statemachine.Enqueue:
		return fmt.Errorf("%w: enqueue through Apply (use Enqueue): %w", ErrInvalidArgument,
			&statemachine.TransitionError{From: statemachine.Queued, Event: ev})
	}
	return checkIDs(ev.String(), ids)
}

// checkIDs rejects an empty list and ids <= 0, as the PostgreSQL backends
// do, with an error matching jobwatch.ErrInvalidID (and
// ErrInvalidArgument).
func checkIDs(op string, ids []jobwatch.JobID) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: %w: %s of no jobs", ErrInvalidArgument, jobwatch.ErrInvalidID, op)
	}
	for _, id := range ids {
		if id <= 0 {
			return fmt.Errorf("%w: %w: %d (ids are positive)", ErrInvalidArgument, jobwatch.ErrInvalidID, int64(id))
		}
	}
	return nil
}
