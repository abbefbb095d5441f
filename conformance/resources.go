package conformance

import (
	"context"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
)

// Resources is what a backend holds open at one moment, as a
// ResourceReporter counts it.
type Resources struct {
	// Subscriptions counts the subscriptions the backend has not released:
	// opened by Listen and not yet closed (a subscription its backend
	// dropped by itself, a lost connection say, is released).
	Subscriptions int
	// Conns counts the connections the backend holds for a caller now:
	// dedicated listening connections, and pool connections checked out
	// (by a read, a write or a probe). Idle pool connections do not count.
	Conns int
}

func (r Resources) String() string {
	return fmt.Sprintf("%d subscription(s), %d connection(s)", r.Subscriptions, r.Conns)
}

// ResourceReporter is an optional capability of a Harness: OpenResources
// reports what its backend holds open right now, from the backend's own
// accounting (not the suite's wrappers), without blocking. With it, Run
// checks after every case, once the case's own cleanups (watchers and
// subscriptions closed) have run, that nothing is left open; without it,
// Run logs that the check is not made.
type ResourceReporter interface {
	OpenResources() Resources
}

// ReadStaller is an optional capability of a Harness: StallReads makes the
// status reads (FetchStatuses) that start from now on deliver their first
// rows and then stall in the middle of their result, as a slow network or a
// large result does, until release is called. stalled is closed once a
// read is stalled so, with at least one row already read (the fake, which
// has no rows, stalls after taking its snapshot). release lets every
// stalled read go on and ends the stall; it is idempotent and never blocks.
// Needed by case 20.
type ReadStaller interface {
	StallReads(ctx context.Context) (stalled <-chan struct{}, release func(), err error)
}

const (
	capResources capability = "ResourceReporter"
	capStall     capability = "ReadStaller"
)

// checkReleased fails the case if the harness's backend still holds a
// subscription or a connection. It runs as a cleanup after the case's own.
// The condition is polled, bounded by the suite timeout, for one stated
// reason: a read given up on because its ctx ended may hand its pool
// connection back when the server's answer ends, after the call returned.
// Subscriptions and listening connections are released by Close before it
// returns, so a correct backend is clear on the first look there.
func (e *env) checkReleased(rr ResourceReporter) {
	e.t.Helper()
	if r := rr.OpenResources(); r.Subscriptions != 0 {
		e.t.Errorf("after the case, with every subscription closed, the backend still holds %s: Subscription.Close must release the subscription and its connection before it returns", r)
		return
	}
	var last Resources
	deadline := time.Now().Add(e.timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		last = rr.OpenResources()
		if last == (Resources{}) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("after the case, with every watcher and subscription closed, the backend still holds %s after %s: something leaked", last, e.timeout)
			return
		}
		<-tick.C
	}
}

// cleanupDeadline is when the case's bounded cleanups stop waiting: the
// suite timeout plus slack after the first of them started. They share it,
// so a backend whose every Close hangs costs a case one timeout, not one per
// subscription.
func (e *env) cleanupDeadline() time.Time {
	e.cleanupOnce.Do(func() { e.cleanupBy = time.Now().Add(e.timeout + slack) })
	return e.cleanupBy
}

// boundedCleanup runs fn from a cleanup and fails the case, naming what, if
// it does not return by the cleanup deadline. A fn that never returns is
// left behind, blocked.
func (e *env) boundedCleanup(what string, fn func() error) {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	timer := time.NewTimer(time.Until(e.cleanupDeadline()))
	defer timer.Stop()
	select {
	case err := <-ch:
		if err != nil {
			e.t.Errorf("%s: %v", what, err)
		}
	case <-timer.C:
		e.t.Errorf("%s did not return within %s of the case's end (it must be bounded)", what, e.timeout+slack)
	}
}

// boundedClose closes sub from a cleanup, bounded by boundedCleanup.
func (e *env) boundedClose(sub jobwatch.Subscription, what string) {
	e.boundedCleanup("Subscription.Close ("+what+")", sub.Close)
}
