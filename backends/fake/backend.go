package fake

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Compile-time checks of the contracts the fake promises.
var (
	_ jobwatch.Driver         = (*Backend)(nil)
	_ jobwatch.Subscription   = (*subscription)(nil)
	_ jobwatch.IgnoredCounter = (*subscription)(nil)
	_ jobwatch.ChangeFeed     = (*Backend)(nil)
)

// Backend is an in-memory, PgQueuer-compatible job store that implements
// jobwatch.Driver and queue.Queue. Create it with New and Close it when the
// test ends (for example with t.Cleanup); the zero value is not usable.
//
// A Backend is safe for concurrent use by multiple goroutines.
type Backend struct {
	cfg       config
	closeOnce sync.Once
	done      chan struct{} // closed by Close

	sent      atomic.Uint64 // Counters.NotificationsSent
	collapsed atomic.Uint64 // Counters.Collapsed

	mu     sync.Mutex
	closed bool
	store  store          // committed jobs and the dedupe index
	nextID jobwatch.JobID // last id handed out
	// changelog lists the ids of every committed change, in commit order:
	// the change feed. It only grows, which suits a test's lifetime.
	changelog []jobwatch.JobID
	subs      map[*subscription]struct{} // live subscriptions
	faults    faults
	gate      *gate         // non-nil while BlockReads holds reads
	counts    counts        // the counters guarded by mu
	changed   chan struct{} // closed and replaced when a waited-on counter changes
}

// New returns an empty, open Backend. Nil options are ignored and no option
// can make it fail.
func New(opts ...Option) *Backend {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return &Backend{
		cfg:     cfg,
		done:    make(chan struct{}),
		store:   newStore(),
		subs:    make(map[*subscription]struct{}),
		changed: make(chan struct{}),
	}
}

// Listen returns an active subscription: every commit that completes after
// Listen returns is delivered to it, unless a fault control says otherwise.
// It never blocks. It returns ctx.Err() when ctx is already done, an error
// matching ErrClosed after Close, and the injected error while FailListens
// is in effect. Each call that gets past the ctx check counts in
// Counters.Listens, failed or not.
func (b *Backend) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("fake: listen: %w", ErrClosed)
	}
	b.counts.listens++
	if err := b.faults.takeListen(); err != nil {
		return nil, fmt.Errorf("fake: listen: %w", err)
	}
	s := newSubscription(b, b.cfg.buffer)
	b.subs[s] = struct{}{}
	b.broadcastLocked()
	return s, nil
}

// FetchStatuses returns the committed status of each known id, once per id,
// in the order of each id's first occurrence in ids. Unknown ids (including
// ids <= 0) are omitted; an empty ids returns an empty result without
// counting as a read.
//
// A call that gets that far counts in Counters.Reads as soon as it starts,
// before it fails or blocks, so WaitReads can tell a read is in flight. It
// then fails with the injected error while FailReads is in effect, or takes
// its snapshot (counting len(ids) in Counters.IDsRead) and, while BlockReads
// holds reads, blocks until released, ctx is done or the Backend is closed.
// The result is the state when the call started, like a statement
// snapshot: a change committed while the call is blocked is not in it.
//
// It returns ctx.Err() when ctx is done (never a partial result), and an
// error matching ErrClosed after Close.
func (b *Backend) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return []jobwatch.Status{}, nil
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("fake: fetch statuses: %w", ErrClosed)
	}
	b.counts.reads++
	b.broadcastLocked()
	if err := b.faults.takeRead(); err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("fake: fetch statuses: %w", err)
	}
	out := make([]jobwatch.Status, 0, min(len(ids), len(b.store.jobs)))
	seen := make(map[jobwatch.JobID]struct{})
	for _, id := range ids {
		r, ok := b.store.jobs[id]
		if !ok {
			continue
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, jobwatch.Status{ID: id, State: r.job.Status})
	}
	b.counts.idsRead += uint64(len(ids))
	g := b.gate
	b.mu.Unlock()

	if g != nil {
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.done:
			return nil, fmt.Errorf("fake: fetch statuses: %w", ErrClosed)
		}
	}
	return out, nil
}

// State returns the committed state of job id, and false when the job does
// not exist (uncommitted Tx changes are not seen). It never blocks and
// works after Close.
func (b *Backend) State(id jobwatch.JobID) (statemachine.State, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.store.jobs[id]
	if !ok {
		return statemachine.None, false
	}
	return r.job.Status, true
}

// Close closes the Backend: every live subscription fails with an error
// matching ErrClosed, pending delayed notifications are cancelled, blocked
// reads return, and later calls to Listen, FetchStatuses, the write path and
// the Wait helpers fail with ErrClosed. State and Counters keep working.
//
// Close is idempotent and always returns nil. When it returns, no goroutine
// started by the Backend is running; concurrent callers all wait for that.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.done)
		subs := b.takeSubsLocked()
		b.broadcastLocked()
		b.mu.Unlock()
		for _, s := range subs {
			s.shutdown(ErrClosed, false)
		}
	})
	return nil
}

// takeSubsLocked removes and returns every live subscription. b.mu is held.
func (b *Backend) takeSubsLocked() []*subscription {
	subs := b.liveSubsLocked()
	clear(b.subs)
	return subs
}

// liveSubsLocked returns the live subscriptions. b.mu is held.
func (b *Backend) liveSubsLocked() []*subscription {
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	return subs
}

// unregister forgets s, if it is still live.
func (b *Backend) unregister(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		b.broadcastLocked()
	}
}

// broadcastLocked wakes every Wait helper. b.mu is held.
func (b *Backend) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// checkCtx rejects a nil ctx and returns ctx.Err().
func checkCtx(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	return ctx.Err()
}
