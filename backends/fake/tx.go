package fake

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Tx is a transaction opened by Backend.Tx. Its changes are invisible to
// FetchStatuses and State until it commits, and are committed together,
// with one notification, only if the function passed to Backend.Tx returns
// nil. It is safe for concurrent use, but only until that function returns;
// afterwards its methods fail with ErrTxDone.
type Tx struct {
	b *Backend

	mu   sync.Mutex
	done bool
	st   *stage // what the transaction sees; touched under b.mu
	ops  []txOp // replayed at commit
}

type txOp struct {
	ev   statemachine.Event // Enqueue for an enqueue
	ids  []jobwatch.JobID
	jobs []queue.NewJob // an enqueue's jobs
}

// Tx runs fn in a transaction. If fn returns nil and ctx is still live, its
// changes commit together and, if they changed anything, notify every live
// subscription once; otherwise nothing changes and nobody is notified.
//
// Tx blocks only while fn runs. It returns fn's error unchanged; ctx.Err()
// when ctx is done before fn runs or before the commit; an error matching
// ErrInvalidArgument for a nil fn, ErrClosed after Close, and ErrConflict
// (wrapping the cause) when a concurrent commit made one of the staged
// transitions illegal. If fn panics, the transaction rolls back and the
// panic continues.
func (b *Backend) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w: nil transaction function", ErrInvalidArgument)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("fake: tx: %w", ErrClosed)
	}
	tx := &Tx{b: b, st: newStage(&b.store)}
	b.mu.Unlock()

	if err := tx.run(fn); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.commitTx(tx)
}

// run calls fn and marks tx finished however fn ends.
func (tx *Tx) run(fn func(tx *Tx) error) error {
	defer func() {
		tx.mu.Lock()
		tx.done = true
		tx.mu.Unlock()
	}()
	return fn(tx)
}

// commitTx replays tx's operations against the current committed state and
// commits them, or nothing.
func (b *Backend) commitTx(tx *Tx) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("fake: commit: %w", ErrClosed)
	}
	st := newStage(&b.store)
	for _, op := range tx.ops {
		var err error
		if op.ev == statemachine.Enqueue {
			err = st.enqueue(op.ids, op.jobs)
		} else {
			err = st.apply(op.ev, op.ids, nil)
		}
		if err != nil {
			b.mu.Unlock()
			return fmt.Errorf("fake: commit: %w: %w", ErrConflict, err)
		}
	}
	p := b.commitLocked(st)
	b.mu.Unlock()
	p.dispatch()
	return nil
}

// EnqueueN creates n queued jobs in the transaction, as Backend.EnqueueN
// does outside one. The ids are taken from the sequence at once and are not
// given back if the transaction rolls back. It never blocks; on error
// nothing is staged.
func (tx *Tx) EnqueueN(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if err := checkCount(n); err != nil {
		return nil, err
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return nil, fmt.Errorf("fake: enqueue: %w", ErrTxDone)
	}
	b := tx.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("fake: enqueue: %w", ErrClosed)
	}
	ids := b.allocLocked(n)
	jobs := defaultJobs(n)
	if err := tx.st.enqueue(ids, jobs); err != nil {
		return nil, fmt.Errorf("fake: enqueue: %w", err) // jobs without a dedupe key: cannot happen
	}
	tx.ops = append(tx.ops, txOp{ev: statemachine.Enqueue, ids: ids, jobs: jobs})
	return slices.Clone(ids), nil
}

// Apply applies ev to each of ids in the transaction, with the rules and
// errors of Backend.Apply, against the committed state plus the
// transaction's own changes. It is atomic: on error nothing is staged and
// the transaction stays usable. It never blocks.
func (tx *Tx) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if err := checkApply(ev, ids); err != nil {
		return err
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return fmt.Errorf("fake: %s: %w", ev, ErrTxDone)
	}
	b := tx.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("fake: %s: %w", ev, ErrClosed)
	}
	if err := tx.st.apply(ev, ids, nil); err != nil {
		return fmt.Errorf("fake: %s: %w", ev, err)
	}
	tx.ops = append(tx.ops, txOp{ev: ev, ids: slices.Clone(ids)})
	return nil
}

// State returns the state of id as the transaction sees it: its own
// changes over the committed state. It never blocks; after the transaction
// finished it returns false.
func (tx *Tx) State(id jobwatch.JobID) (statemachine.State, bool) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return statemachine.None, false
	}
	tx.b.mu.Lock()
	defer tx.b.mu.Unlock()
	return tx.st.state(id)
}
