// Package conformance is the test suite every jobwatch backend must pass:
// ours (backends/fake, backends/pgx, backends/pq) and third parties'.
//
// The suite checks a backend the way users meet it, through a
// jobwatch.Watcher (its invariants: listen then check, notifications are
// hints, loss is repaired at once, bursts coalesce, a wait costs O(1), Close
// is bounded), plus direct checks of the two-method
// jobwatch.Driver contract (Listen returns only once live, Next and
// FetchStatuses honour ctx, FetchStatuses omits unknown ids, ...).
//
// # Using it from a backend's tests
//
// A backend author writes a Harness that gives each test case a fresh,
// isolated instance of the backend (its own schema, prefix or database) and
// calls Run from a _test.go file:
//
//	package mybackend_test
//
//	import (
//		"context"
//		"testing"
//
//		"github.com/jobwatch/jobwatch"
//		"github.com/jobwatch/jobwatch/conformance"
//		"github.com/jobwatch/jobwatch/statemachine"
//
//		"example.com/mybackend"
//	)
//
//	type harness struct{ b *mybackend.Backend }
//
//	func (h harness) Driver() jobwatch.Driver { return h.b }
//	func (h harness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
//		return h.b.Enqueue(ctx, n) // n jobs, one transaction
//	}
//	func (h harness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
//		return h.b.Apply(ctx, ev, ids...) // all ids, one transaction, all or nothing
//	}
//	// Optional: lets the reconnect case run.
//	func (h harness) BreakListener(ctx context.Context) error { return h.b.KillListenerConn(ctx) }
//	// Optional: lets the foreign/garbled notification case run.
//	func (h harness) NotifyRaw(ctx context.Context, payload string) error {
//		return h.b.PgNotify(ctx, payload)
//	}
//	// Optional: lets the suite check after each case that nothing is left open.
//	func (h harness) OpenResources() conformance.Resources {
//		return conformance.Resources{Subscriptions: h.b.OpenSubscriptions(), Conns: h.b.ConnsInUse()}
//	}
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) conformance.Harness {
//			b := mybackend.OpenTestSchema(t) // fresh and isolated
//			t.Cleanup(func() { b.Close() })
//			return harness{b}
//		})
//	}
//
// Each case is a subtest named after the rule it checks (for example
// "01_terminal_states_resolve"); a failing case logs the rule it found
// broken. Cases that need an optional capability the harness lacks
// (ListenerBreaker, RawNotifier, OpenApplier, SilentHolder, ReadStaller)
// are not run, and Run says once, with t.Logf, which ones and why; nothing
// is skipped silently.
//
// Two optional capabilities make the suite stricter. A ResourceReporter
// harness reports what its backend still holds (subscriptions, listening
// and checked-out pool connections): after every case, once the case's
// watchers and subscriptions are closed, the suite requires that nothing
// is left, so a Close that returns without releasing anything fails. A
// ReadStaller harness can stall a status read in the middle of its result
// (a TCP proxy that holds the stream after the first rows, for a real
// database): case 20 cancels the read's ctx while it is stalled, and the
// read must fail, not return the rows it had. Without ResourceReporter Run
// logs that the check is not made.
//
// Every Watcher a case makes is checked when it closes: for a driver with a
// ChangeFeed, Stats.MissedChanges must be 0, that is no full read of the
// pending jobs found a change the feed should have reported.
//
// Every cleanup the suite runs (closing a subscription or a watcher,
// releasing a stall, rolling back an open transaction) is bounded: one
// that does not return fails its case with a line naming it. The suite
// does not sleep: it waits on signals, or polls a condition that nothing
// signals (a Watcher's stats, a backend's resources) with a bound, and
// gives a negative check ("this wait is still pending") a short fixed
// window, the one thing no signal can say.
//
// The suite needs a backend that can listen: a Driver whose Listen returns
// jobwatch.ErrListenUnsupported fails the notification cases.
//
// # Time
//
// On the in-memory backend the whole suite takes a few seconds. Against a
// real PostgreSQL (about 1 ms per transaction) it batches writes through
// Harness.Apply. Every blocking call is bounded: an operation that should
// complete but does not fails its case after a timeout, 10s by default.
// Set JOBWATCH_CONFORMANCE_TIMEOUT (a Go duration, for example "30s") to
// change it for a slow database, or shorten it to make a broken backend
// fail fast.
package conformance

import (
	"context"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Harness is one fresh, isolated backend instance for one test case.
//
// Run calls newHarness once per case (plus once up front to discover the
// optional capabilities); the harness registers its own cleanup with
// t.Cleanup. Nothing else may write to the instance while a case runs: the
// cases count notifications and status reads.
//
// Its methods are called from several goroutines at once and must be safe
// for concurrent use.
type Harness interface {
	// Driver returns the backend under test. It must return the same
	// Driver on every call.
	Driver() jobwatch.Driver
	// Enqueue creates n queued jobs in one transaction (one commit) and
	// returns their ids in order.
	Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error)
	// Apply applies ev to every id in ONE transaction through the
	// backend's real write path (all or nothing). An illegal transition
	// returns an error matching statemachine.ErrIllegalTransition and
	// changes nothing.
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
}

// ListenerBreaker is an optional capability of a Harness: BreakListener
// kills the connection every live subscription listens on (as a network
// failure or pg_terminate_backend would), so that their Next fails, or the
// backend reconnects in place and delivers a Resync. Either way the Watcher
// must re-read every pending job at once.
// Needed by case 15.
type ListenerBreaker interface {
	BreakListener(ctx context.Context) error
}

// RawNotifier is an optional capability of a Harness: NotifyRaw sends an
// arbitrary payload on the backend's notification channel, as
// pg_notify(channel, payload) would. Needed by case 11.
type RawNotifier interface {
	NotifyRaw(ctx context.Context, payload string) error
}

// OpenApplier is an optional capability of a Harness: ApplyOpen applies ev
// to ids through the backend's real write path in a transaction that it
// leaves open (so the rows it writes, and their ids, exist but are not
// committed), and returns end, which commits it (commit true) or rolls it
// back. Needed by case 17, which commits it after later changes: out of
// order, as a long transaction does.
type OpenApplier interface {
	ApplyOpen(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) (end func(ctx context.Context, commit bool) error, err error)
}
