package conformance

import (
	"context"
	"sync"

	"github.com/jobwatch/jobwatch"
)

// countingDriver wraps the backend's Driver to observe what the Watcher
// does with it: status reads (calls, ids, batch sizes, which ids a completed
// read covered), subscriptions opened and closed, notifications delivered.
// The suite relies on these counts rather than on any backend counter.
type countingDriver struct {
	inner jobwatch.Driver

	mu       sync.Mutex
	started  uint64 // FetchStatuses calls started; a call's sequence number
	inflight int
	ids      uint64
	maxBatch int
	errs     uint64
	// seen maps an id to the highest sequence number of a FetchStatuses
	// call that included it and returned without error.
	seen    map[jobwatch.JobID]uint64
	listens int // successful Listen calls
	closes  int // subscriptions closed (first Close of each)
	notes   uint64
}

func newCountingDriver(d jobwatch.Driver) *countingDriver {
	return &countingDriver{inner: d, seen: make(map[jobwatch.JobID]uint64)}
}

func (c *countingDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := c.inner.Listen(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.listens++
	c.mu.Unlock()
	cs := &countingSub{inner: sub, d: c}
	if ic, ok := sub.(jobwatch.IgnoredCounter); ok {
		// Keep the optional interface visible to the Watcher.
		return countingSubIgnored{cs, ic}, nil
	}
	return cs, nil
}

func (c *countingDriver) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	c.mu.Lock()
	c.started++
	seq := c.started
	c.inflight++
	c.ids += uint64(len(ids))
	c.maxBatch = max(c.maxBatch, len(ids))
	c.mu.Unlock()

	st, err := c.inner.FetchStatuses(ctx, ids)

	c.mu.Lock()
	c.inflight--
	if err != nil {
		c.errs++
	} else {
		for _, id := range ids {
			if c.seen[id] < seq {
				c.seen[id] = seq
			}
		}
	}
	c.mu.Unlock()
	return st, err
}

// driver returns c as the Watcher should see it: with the inner driver's
// ChangeFeed, counted like a status read, when it has one.
func (c *countingDriver) driver() jobwatch.Driver {
	if f, ok := c.inner.(jobwatch.ChangeFeed); ok {
		return countingFeed{c, f}
	}
	return c
}

type countingFeed struct {
	*countingDriver
	feed jobwatch.ChangeFeed
}

// Changes counts as a status read covering the jobs it returns.
func (c countingFeed) Changes(ctx context.Context, cur jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	c.mu.Lock()
	c.started++
	seq := c.started
	c.inflight++
	c.mu.Unlock()

	cs, err := c.feed.Changes(ctx, cur)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	if err != nil {
		c.errs++
		return cs, err
	}
	c.ids += uint64(len(cs.Statuses))
	for _, st := range cs.Statuses {
		c.seen[st.ID] = max(c.seen[st.ID], seq)
	}
	return cs, nil
}

// mark returns the sequence number of the latest read started so far.
func (c *countingDriver) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

// readSince reports whether every id was covered by a successful read that
// started after mark.
func (c *countingDriver) readSince(mark uint64, ids ...jobwatch.JobID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if c.seen[id] <= mark {
			return false
		}
	}
	return true
}

type driverCounts struct {
	reads, ids, errs uint64
	inflight         int
	maxBatch         int
	openSubs         int
	notes            uint64
}

func (c *countingDriver) counts() driverCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return driverCounts{
		reads: c.started, ids: c.ids, errs: c.errs, inflight: c.inflight,
		maxBatch: c.maxBatch, openSubs: c.listens - c.closes, notes: c.notes,
	}
}

type countingSub struct {
	inner jobwatch.Subscription
	d     *countingDriver
	once  sync.Once
}

func (s *countingSub) Next(ctx context.Context) (jobwatch.Notification, error) {
	n, err := s.inner.Next(ctx)
	if err == nil {
		s.d.mu.Lock()
		s.d.notes++
		s.d.mu.Unlock()
	}
	return n, err
}

func (s *countingSub) Close() error {
	s.once.Do(func() {
		s.d.mu.Lock()
		s.d.closes++
		s.d.mu.Unlock()
	})
	return s.inner.Close()
}

type countingSubIgnored struct {
	*countingSub
	ic jobwatch.IgnoredCounter
}

func (s countingSubIgnored) Ignored() uint64 { return s.ic.Ignored() }

// doneWatcher is a context that closes asked the first time something asks
// for its Done channel: the moment a blocking call starts waiting on it.
type doneWatcher struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func watchDone(ctx context.Context) *doneWatcher {
	return &doneWatcher{Context: ctx, asked: make(chan struct{})}
}

func (c *doneWatcher) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}
