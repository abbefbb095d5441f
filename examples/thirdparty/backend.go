package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Errors a dead subscription's Next returns.
var (
	ErrSubscriptionClosed = errors.New("memqueue: subscription closed")
	ErrDisconnected       = errors.New("memqueue: connection lost")
)

// Backend is an in-memory job queue implementing jobwatch.Driver. One mutex
// plays the database: every write holds it from first check to last change,
// so each write is one transaction. Create it with New.
type Backend struct {
	mu     sync.Mutex
	jobs   map[jobwatch.JobID]statemachine.State
	lastID jobwatch.JobID
	subs   map[*subscription]struct{}
}

var _ jobwatch.Driver = (*Backend)(nil)

// New returns an empty queue.
func New() *Backend {
	return &Backend{
		jobs: make(map[jobwatch.JobID]statemachine.State),
		subs: make(map[*subscription]struct{}),
	}
}

// Listen implements jobwatch.Driver. The subscription is registered under
// the lock every commit takes, so every commit after Listen returns reaches
// it: Listen returns only once the subscription is live. (A PostgreSQL
// backend returns once its LISTEN has committed.)
func (b *Backend) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{b: b, hint: make(chan struct{}, 1), done: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// FetchStatuses implements jobwatch.Driver: the current state of each known
// id, once per id. Unknown ids, 0 and negative ones included, are omitted;
// they are not an error.
func (b *Backend) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]jobwatch.Status, 0, len(ids))
	seen := make(map[jobwatch.JobID]bool, len(ids))
	for _, id := range ids {
		if st, ok := b.jobs[id]; ok && !seen[id] {
			seen[id] = true
			out = append(out, jobwatch.Status{ID: id, State: st})
		}
	}
	return out, nil
}

// Enqueue creates n queued jobs in one commit and returns their ids.
func (b *Backend) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("memqueue: enqueue %d jobs: need at least one", n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := make([]jobwatch.JobID, n)
	for i := range ids {
		b.lastID++
		ids[i] = b.lastID
		b.jobs[ids[i]] = statemachine.Queued
	}
	b.notifyLocked()
	return ids, nil
}

// Apply applies ev to every id in one commit, all or nothing. Each
// transition is checked with statemachine.Transition before anything
// changes, so one illegal transition (an unknown job is in state None, from
// which no event but enqueue is legal) fails the call with an error
// matching statemachine.ErrIllegalTransition and writes nothing.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 || ev == statemachine.Enqueue {
		return fmt.Errorf("memqueue: apply %s to %d jobs: name at least one, and create jobs with Enqueue", ev, len(ids))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := make(map[jobwatch.JobID]statemachine.State, len(ids))
	for _, id := range ids {
		to, err := statemachine.Transition(b.jobs[id], ev)
		if err != nil {
			return fmt.Errorf("memqueue: job %d: %w", id, err)
		}
		next[id] = to // a repeated id finds its old state again: it counts once
	}
	maps.Copy(b.jobs, next)
	b.notifyLocked()
	return nil
}

// notifyLocked tells every subscription that something changed, once per
// commit, while the lock still keeps readers out: a Watcher woken by it
// reads the new states. It never blocks the writer: a subscription holds at
// most one pending hint and later commits fold into it, which loses
// nothing, because a hint names no job and a Watcher answers it by reading
// every job it waits for.
func (b *Backend) notifyLocked() {
	for s := range b.subs {
		select {
		case s.hint <- struct{}{}:
		default: // a hint is already pending
		}
	}
}

// Disconnect drops every subscription, as a lost database connection would:
// their Next fails, and the Watcher must Listen again and re-read.
func (b *Backend) Disconnect() {
	b.mu.Lock()
	subs := b.subs
	b.subs = make(map[*subscription]struct{})
	b.mu.Unlock()
	for s := range subs {
		s.end(ErrDisconnected)
	}
}

// subscription is one Listen. Next is called by one goroutine at a time;
// Close and the writers' hints may come from any goroutine.
type subscription struct {
	b    *Backend
	hint chan struct{} // capacity 1: a commit since the last Next
	done chan struct{} // closed when the subscription ends
	once sync.Once
	err  error // why it ended; written before done is closed
}

// Next implements jobwatch.Subscription: it blocks until a commit, ctx is
// done, or the subscription ends. An ended subscription and a done ctx are
// checked first, so that a pending hint cannot hide them.
func (s *subscription) Next(ctx context.Context) (jobwatch.Notification, error) {
	select {
	case <-s.done:
		return jobwatch.Notification{}, s.err
	default:
	}
	if err := ctx.Err(); err != nil {
		return jobwatch.Notification{}, err
	}
	select {
	case <-s.hint:
		return jobwatch.Notification{}, nil // no ids: "something changed"
	case <-s.done:
		return jobwatch.Notification{}, s.err
	case <-ctx.Done():
		return jobwatch.Notification{}, ctx.Err()
	}
}

// Close implements jobwatch.Subscription. It is idempotent, never blocks,
// and makes a blocked Next return.
func (s *subscription) Close() error {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
	s.end(ErrSubscriptionClosed)
	return nil
}

// end makes the subscription dead for good; the first reason sticks.
func (s *subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}
