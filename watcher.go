package jobwatch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch/statemachine"
)

// Watcher waits for jobs to reach their final status. One Watcher serves any
// number of concurrent waits on one Driver: it keeps one subscription, reads
// statuses in batches, and starts no goroutine per wait.
//
// A Watcher is safe for concurrent use. Create it with New and release it
// with Close.
type Watcher struct {
	driver Driver
	feed   ChangeFeed // the driver's, unless disabled; nil without
	cfg    config

	cancel    context.CancelFunc // stops the goroutines New started
	done      chan struct{}      // closed by Close
	closeDone chan struct{}      // closed when the first Close has finished
	wg        sync.WaitGroup
	kick      chan struct{} // wakes the scheduler; capacity 1

	mu       sync.Mutex
	closed   bool
	closeErr error // valid once closeDone is closed
	pending  map[JobID]*entry
	waiters  int
	gen      uint64 // registrations so far: a read decides only waits older than it
	sched    schedule
	sub      Subscription // the live subscription, for Close
	stats    Stats
	// ignoredGone sums Ignored() of the subscriptions already gone.
	ignoredGone uint64

	// What the latest attempts said of the database, for WaitError.
	readErr      error // the latest read failed with it; nil after a read worked
	listenErr    error // the latest Listen or subscription failed; nil once listening
	notInstalled error // readErr, when it says the queue is not installed

	// The change feed's state; cursor is only read and written by the
	// scheduler goroutine.
	cursor       Cursor
	feedFailures int       // consecutive failed feed reads
	feedUntil    time.Time // the feed is not read before this, after a failure
	partials     uint64    // Partial change sets (and cursor starts) so far
	owed         bool      // a full read is owed since the last Partial
	epoch        uint64    // bumped whenever the feed may not report every change
	suspects     []JobID   // settled by a full read while the feed vouched
}

// entry is the shared state of every wait on one job id.
type entry struct {
	id       JobID
	gen      uint64        // Watcher.gen when it was registered
	refs     int           // waits holding this entry
	done     chan struct{} // closed when resolved
	state    statemachine.State
	err      error              // ErrNotFound, a *NotInstalledError, or nil
	last     statemachine.State // latest state a read found
	deadline time.Time          // end of the not-found grace
	found    bool               // some read returned this id
	observed uint64             // Watcher.epoch when a read last saw it unsettled
	watchers []*collector       // multi-job waits to tell when this settles
}

// New returns a Watcher on d and starts its background work: the listener
// supervisor and the status-read scheduler. It does not block on the
// database: the first Listen happens in the background, and waits made
// before it succeeds are re-read once it does.
//
// New returns an error matching ErrInvalidOption for a nil driver or an
// invalid option, and then starts nothing.
func New(d Driver, opts ...Option) (*Watcher, error) {
	if d == nil {
		return nil, optErr("nil driver")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			return nil, optErr("nil option")
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		driver:    d,
		cfg:       cfg,
		cancel:    cancel,
		done:      make(chan struct{}),
		closeDone: make(chan struct{}),
		kick:      make(chan struct{}, 1),
		pending:   make(map[JobID]*entry),
		sched:     newSchedule(time.Now(), cfg.refresh, cfg.fullEvery, cfg.debounce),
	}
	if f, ok := d.(ChangeFeed); ok && cfg.useFeed {
		w.feed = f
	}
	w.stats.PollOnly = cfg.pollOnly
	w.stats.ChangeFeed = w.feed != nil
	w.wg.Add(2)
	go func() { defer w.wg.Done(); w.runScheduler(ctx) }()
	go func() { defer w.wg.Done(); w.runListener(ctx) }()
	return w, nil
}

// Wait blocks until job id settles (reaches a terminal state, or failed with
// WithSettleOnHold) and returns that state. A job's outcome is data: an
// exception or a cancellation is a state, not an error.
//
// Wait returns an error only when waiting itself failed: a *WaitError when
// ctx ended, the Watcher was closed or the queue is not installed (it
// matches ctx.Err(), ErrClosed or ErrNotInstalled, and says what was last
// known of the job and of the database), a *NotFoundError (ErrNotFound)
// after the not-found grace, ErrClosed when called after Close, or
// ErrInvalidID for id <= 0. A returned wait is forgotten at once.
func (w *Watcher) Wait(ctx context.Context, id JobID) (statemachine.State, error) {
	if id <= 0 {
		return statemachine.None, invalidID(id)
	}
	es, err := w.register([]JobID{id}, nil)
	if err != nil {
		return statemachine.None, err
	}
	defer w.release(es, nil)
	e := es[0]
	select {
	case <-e.done:
	case <-ctx.Done():
		return statemachine.None, w.waitError(e, ctx.Err())
	case <-w.done:
		return statemachine.None, w.waitError(e, ErrClosed)
	}
	if e.err != nil {
		return statemachine.None, e.failure()
	}
	return e.state, nil
}

// failure is the error of a resolved entry that did not settle.
func (e *entry) failure() error {
	if e.err == ErrNotFound {
		return &NotFoundError{IDs: []JobID{e.id}}
	}
	return &WaitError{ID: e.id, LastState: e.last, Err: e.err}
}

// waitError says why the wait on e ended with reason before it settled.
func (w *Watcher) waitError(e *entry, reason error) *WaitError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return &WaitError{ID: e.id, LastState: e.last, Err: reason, DriverErr: w.driverErr()}
}

// driverErr is the latest driver error, while the driver is failing.
// Called with w.mu held.
func (w *Watcher) driverErr() error {
	if w.readErr != nil {
		return w.readErr
	}
	return w.listenErr
}

// WaitAll blocks until every job in ids has settled and returns their
// states in input order; an id may appear more than once. Ids never found
// do not stop the others: once all are settled, WaitAll returns the states
// of the found ones and a *NotFoundError listing the rest.
//
// When ctx ends, the Watcher is closed or the queue is not installed, it
// returns at once with the states settled so far (statemachine.None for
// the others) and an *UnsettledError holding a *WaitError for each job
// not settled. An empty list or an id <= 0 returns ErrInvalidID before
// anything is registered.
func (w *Watcher) WaitAll(ctx context.Context, ids []JobID) ([]statemachine.State, error) {
	if err := checkIDs(ids); err != nil {
		return nil, err
	}
	es, err := w.register(ids, nil)
	if err != nil {
		return nil, err
	}
	defer w.release(es, nil)
	var reason error
wait:
	for _, e := range es {
		select {
		case <-e.done:
			if e.err != nil && e.err != ErrNotFound {
				reason = e.err
				break wait
			}
		case <-ctx.Done():
			reason = ctx.Err()
			break wait
		case <-w.done:
			reason = ErrClosed
			break wait
		}
	}
	out := make([]statemachine.State, len(ids))
	var missing []JobID
	var unsettled []*WaitError
	for i, e := range es {
		select {
		case <-e.done:
			switch {
			case e.err == nil:
				out[i] = e.state
			case e.err == ErrNotFound:
				missing = append(missing, e.id)
			default:
				unsettled = append(unsettled, e.failure().(*WaitError))
			}
		default:
			unsettled = append(unsettled, w.waitError(e, reason))
		}
	}
	switch {
	case len(unsettled) > 0:
		return out, &UnsettledError{Jobs: unsettled}
	case missing != nil:
		return out, &NotFoundError{IDs: missing}
	}
	return out, nil
}

// WaitAny blocks until the first of ids settles and returns its status; the
// waits on the others are dropped at once. Ids that are never found are
// skipped; if none is ever found it returns a *NotFoundError listing all.
// When waiting stops early it returns an *UnsettledError, as WaitAll does.
// Bad input returns ErrInvalidID.
func (w *Watcher) WaitAny(ctx context.Context, ids []JobID) (Status, error) {
	var unsettled []*WaitError
	for st, err := range w.WaitEach(ctx, ids) {
		var we *WaitError
		switch {
		case err == nil:
			return st, nil
		case errors.As(err, &we):
			unsettled = append(unsettled, we)
		case !errors.Is(err, ErrNotFound):
			return Status{}, err
		}
	}
	if len(unsettled) > 0 {
		return Status{}, &UnsettledError{Jobs: unsettled}
	}
	return Status{}, &NotFoundError{IDs: distinct(ids)}
}

// WaitEach returns an iterator over the distinct jobs of ids in the order
// they settle, each as soon as it does: (status, nil) for a settled job,
// (Status{ID: id}, *NotFoundError) for one never found. If waiting stops
// early (ctx ended, Close, or the queue is not installed), it then yields
// one pair for each job not settled yet, (Status{ID: id, State: last seen
// state}, *WaitError), and stops. Breaking out of the loop drops the
// remaining waits at once. Bad input (see WaitAll) yields one pair with
// ErrInvalidID.
//
// All waits are registered when iteration starts, so the watcher reads
// their statuses in one batch. The iterator is single-use.
func (w *Watcher) WaitEach(ctx context.Context, ids []JobID) iter.Seq2[Status, error] {
	return func(yield func(Status, error) bool) {
		if err := checkIDs(ids); err != nil {
			yield(Status{}, err)
			return
		}
		c := newCollector()
		es, err := w.register(distinct(ids), c)
		if err != nil {
			yield(Status{}, err)
			return
		}
		defer w.release(es, c)
		var reason error
		for left := len(es); left > 0 && reason == nil; {
			select {
			case <-c.signal:
			case <-ctx.Done():
				reason = ctx.Err()
				continue
			case <-w.done:
				reason = ErrClosed
				continue
			}
			for _, e := range c.drain() {
				left--
				st, err := Status{ID: e.id, State: e.state}, error(nil)
				if e.err != nil {
					st, err = Status{ID: e.id, State: e.last}, e.failure()
				}
				if !yield(st, err) {
					return
				}
			}
		}
		if reason == nil {
			return
		}
		for _, e := range es {
			select {
			case <-e.done:
				continue // yielded already, or in the collector: the reason stops it
			default:
			}
			we := w.waitError(e, reason)
			if !yield(Status{ID: e.id, State: we.LastState}, we) {
				return
			}
		}
	}
}

// distinct returns ids without repeats, in first-seen order.
func distinct(ids []JobID) []JobID {
	seen := make(map[JobID]struct{}, len(ids))
	out := make([]JobID, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// Close stops the Watcher: pending and later waits return ErrClosed, the
// subscription is closed, and Close waits for the goroutines New started,
// at most the close timeout (WithCloseTimeout); a driver that ignores
// both its ctx and Subscription.Close makes it return an error after that.
// Close is idempotent and safe for concurrent use; later calls return the
// first call's result.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.closeDone // bounded: the first call returns within the close timeout
		return w.closeErr
	}
	w.closed = true
	sub := w.sub
	close(w.done)
	w.mu.Unlock()

	w.cancel()
	var err error
	if sub != nil {
		err = sub.Close()
	}
	finished := make(chan struct{})
	go func() { w.wg.Wait(); close(finished) }()
	timer := time.NewTimer(w.cfg.closeTimeout)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		err = errors.Join(err, fmt.Errorf("driver still busy after %s", w.cfg.closeTimeout))
	}
	if err != nil {
		err = fmt.Errorf("jobwatch: close: %w", err)
	}
	w.closeErr = err
	close(w.closeDone)
	return err
}

// Stats returns a snapshot of the Watcher's counters. Safe for concurrent
// use; it does not block on the database.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = len(w.pending)
	s.Waiters = w.waiters
	s.Listening = w.sub != nil
	s.Failing = w.driverErr()
	s.IgnoredNotifications = w.ignoredGone
	if ic, ok := w.sub.(IgnoredCounter); ok {
		s.IgnoredNotifications += ic.Ignored()
	}
	return s
}

// register adds one wait per id (duplicates included) and returns the
// entries in input order. New ids are queued for a status read after the
// debounce: that read is what resolves a job that finished before the wait.
func (w *Watcher) register(ids []JobID, c *collector) ([]*entry, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	es := make([]*entry, len(ids))
	fresh := false
	w.gen++
	for i, id := range ids {
		e := w.pending[id]
		if e == nil {
			e = &entry{id: id, gen: w.gen, done: make(chan struct{}), deadline: now.Add(w.cfg.grace)}
			w.pending[id] = e
			w.sched.markID(id, causeWait)
			fresh = true
		}
		e.refs++
		if c != nil {
			e.watchers = append(e.watchers, c)
		}
		es[i] = e
	}
	w.waiters += len(ids)
	if fresh {
		w.sched.request(now, w.cfg.debounce, false)
		w.wakeScheduler()
	}
	return es, nil
}

// release ends the waits of register. An entry no wait holds any more is
// forgotten at once, so a cancelled wait costs nothing afterwards.
func (w *Watcher) release(es []*entry, c *collector) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiters -= len(es)
	for _, e := range es {
		e.refs--
		if c != nil {
			e.watchers = removeCollector(e.watchers, c)
		}
		if e.refs == 0 && w.pending[e.id] == e {
			w.forget(e)
		}
	}
}

// forget drops e, and when nothing is pending any more, replaces the maps:
// Go maps never shrink, and a burst of 100,000 waits would otherwise keep
// their memory for the Watcher's life. Called with w.mu held.
func (w *Watcher) forget(e *entry) {
	delete(w.pending, e.id)
	w.sched.forget(e.id)
	if len(w.pending) == 0 {
		w.pending = make(map[JobID]*entry)
		w.sched.reset()
	}
}

func removeCollector(cs []*collector, c *collector) []*collector {
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			return cs[:len(cs)-1]
		}
	}
	return cs
}

// resolve settles e. Called with w.mu held.
func (w *Watcher) resolve(e *entry, state statemachine.State, err error, why cause) {
	w.forget(e)
	e.state, e.err = state, err
	close(e.done)
	for _, c := range e.watchers {
		c.push(e)
	}
	e.watchers = nil
	switch {
	case err == ErrNotFound:
		w.stats.NotFound++
	case err != nil:
		w.stats.NotInstalled++
	}
	w.stats.Resolved.add(why, 1)
}

// settles reports whether state ends a wait.
func (w *Watcher) settles(state statemachine.State) bool {
	return state.Terminal() || (state == statemachine.Failed && w.cfg.settleOnHold)
}

// recordError keeps err for Stats and logs it: nobody else receives it.
// Called without w.mu held, so a slow log handler never blocks waits.
func (w *Watcher) recordError(msg string, err error, attrs ...any) {
	w.mu.Lock()
	w.stats.LastError = err
	w.stats.LastErrorAt = time.Now()
	w.mu.Unlock()
	w.cfg.logger.Warn(msg, append(attrs, "err", err)...)
}

func (w *Watcher) wakeScheduler() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
