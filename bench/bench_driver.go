package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
)

// dbClock sums the wall time of database calls, as the client sees it.
type dbClock struct {
	calls   atomic.Uint64
	ns      atomic.Int64
	partial atomic.Uint64 // change sets that came back Partial
}

func (c *dbClock) add(d time.Duration) {
	c.calls.Add(1)
	c.ns.Add(int64(d))
}

// snapshot returns the calls and time so far.
func (c *dbClock) snapshot() (calls uint64, total time.Duration) {
	return c.calls.Load(), time.Duration(c.ns.Load())
}

// timedDriver is a Driver whose status reads are timed: the bench's
// measure of database time is the summed wall time of FetchStatuses (and,
// with timedFeedDriver, Changes) calls. Listen passes through.
type timedDriver struct {
	jobwatch.Driver
	clock *dbClock
}

func (d timedDriver) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	start := time.Now()
	out, err := d.Driver.FetchStatuses(ctx, ids)
	d.clock.add(time.Since(start))
	return out, err
}

// timedFeedDriver is a timedDriver over a driver with a ChangeFeed, which
// it keeps visible to the Watcher.
type timedFeedDriver struct {
	timedDriver
	feed jobwatch.ChangeFeed
}

func (d timedFeedDriver) Changes(ctx context.Context, cursor jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	start := time.Now()
	cs, err := d.feed.Changes(ctx, cursor)
	d.clock.add(time.Since(start))
	if err == nil && cs.Partial {
		d.clock.partial.Add(1)
	}
	return cs, err
}

// timed wraps d so that clock sums its read time. The result implements
// jobwatch.ChangeFeed exactly when d does.
func timed(d jobwatch.Driver, clock *dbClock) jobwatch.Driver {
	td := timedDriver{Driver: d, clock: clock}
	if f, ok := d.(jobwatch.ChangeFeed); ok {
		return timedFeedDriver{timedDriver: td, feed: f}
	}
	return td
}
