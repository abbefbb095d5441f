package reliability_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// TestFaultHalfOpenListener: the listening connection goes through
// pgtest's TCP proxy, which then silently stops forwarding on every
// connection open at that moment without closing any (a half-open
// connection: a dead network path or a frozen peer; no FIN, no RST, no
// error). Status reads and writes go directly to the server.
//
//   - The subscription's end-to-end health check (200ms) notices within a
//     few intervals, and fails with the backend's ErrUnhealthy.
//   - The Watcher reconnects through the proxy (connections opened after
//     the cut pass normally: the path has healed) and its full read after
//     the reconnect resolves the jobs settled during the cut, whose
//     notifications went into the void; the poll (1h) plays no part.
//   - The new subscription delivers: jobs settled afterwards resolve too.
func TestFaultHalfOpenListener(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			fltTestHalfOpen(t, bk)
		})
	}
}

func fltTestHalfOpen(t *testing.T, bk fltBackendKind) {
	const (
		perGroup = 60
		health   = 200 * time.Millisecond
	)
	began := time.Now()
	ctx := fltTestContext(t, 60*time.Second)
	schema := pgtest.Schema(t)
	proxy, proxyDSN := pgtest.NewProxy(t)
	q := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), listenDSN: proxyDSN, schema: schema, prefix: schema + "_", health: health})
	// Close the proxy before the pools (cleanups run last-in first-out): pgx
	// waits up to 15s for a timed-out connection to drain, and a pool
	// waits for that when it closes.
	t.Cleanup(proxy.Close)
	if _, err := q.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, q, 3*perGroup)
	before, during, after := ids[:perGroup], ids[perGroup:2*perGroup], ids[2*perGroup:]

	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, q.driver(rec), rec,
		jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		jobwatch.WithDebounce(10*time.Millisecond))
	each := fltWatchEach(ctx, w, ids)
	var firstPID uint32
	if err := rec.await(ctx, "the Watcher listens", func(evs []fltEvent) bool {
		l := fltOf(evs, fltEvListen, rec.start, fltForever)
		if len(l) > 0 {
			firstPID = l[0].pid
		}
		return len(l) > 0
	}); err != nil {
		t.Fatal(err)
	}
	if pids := q.listener.ListenerPIDs(); !slices.Contains(pids, firstPID) {
		t.Fatalf("ListenerPIDs() = %v, want the subscription's pid %d", pids, firstPID)
	}
	// The path works: notifications come through the proxy.
	fltMustSettle(t, ctx, q, before)
	if err := each.await(ctx, "jobs settled before the cut", before); err != nil {
		t.Fatal(err)
	}
	// Let the Watcher go quiet first: once a status read has started after
	// the last of those jobs' notifications, nothing read before the cut is
	// left to run after it, and the jobs settled during the cut can only
	// be found by the read that follows the reconnect.
	notes := fltSettleTxs(before)
	if err := fltAwaitQuiet(ctx, rec, notes); err != nil {
		t.Fatal(err)
	}
	resyncBefore := w.Stats().Resolved.Resync

	// Cut: everything open through the proxy now goes silent.
	cut := time.Now()
	if n := proxy.Blackhole(); n < 1 {
		t.Fatalf("Blackhole affected %d connections; the listener's should be one of them", n)
	}
	// Settled while the listener is deaf: their notifications are lost.
	fltMustSettle(t, ctx, q, during)

	var (
		detected time.Time
		why      error
	)
	if err := rec.await(ctx, "the health check notices the dead connection", func(evs []fltEvent) bool {
		e := fltOf(evs, fltEvSubErr, cut, fltForever)
		if len(e) > 0 {
			detected, why = e[0].at, e[0].err
		}
		return len(e) > 0
	}); err != nil {
		t.Fatal(err)
	}
	took := detected.Sub(cut)
	if !errors.Is(why, bk.errUnhealthy) {
		t.Errorf("the subscription failed with %v, want the backend's health-check error (%v)", why, bk.errUnhealthy)
	}
	// Idle for one interval, then the probe gets one more to come back; a
	// probe that cannot even be sent (pgx sends it from the proxied pool,
	// whose idle connection is cut as well) falls back to a ping bounded by
	// a third. Allow a second of scheduling slack on a loaded machine.
	if limit := 3*health + time.Second; took > limit {
		t.Errorf("the half-open connection was noticed after %v, want within %v (health-check interval %v)", took, limit, health)
	}

	// Reconnected through the proxy, and the read that follows resolves
	// what was missed.
	var newPID uint32
	if err := rec.await(ctx, "the Watcher listens again", func(evs []fltEvent) bool {
		l := fltOf(evs, fltEvListen, detected, fltForever)
		if len(l) > 0 {
			newPID = l[0].pid
		}
		return len(l) > 0
	}); err != nil {
		t.Fatal(err)
	}
	if newPID == firstPID {
		t.Errorf("the new subscription has the old one's pid %d", newPID)
	}
	if err := each.await(ctx, "jobs settled during the cut", during); err != nil {
		t.Fatal(err)
	}
	healed := time.Since(cut)
	if got := w.Stats().Resolved.Resync - resyncBefore; got < perGroup {
		t.Errorf("%d jobs resolved by the read after the reconnect, want all %d settled during the cut", got, perGroup)
	}
	if pids := q.listener.ListenerPIDs(); !slices.Contains(pids, newPID) || slices.Contains(pids, firstPID) {
		t.Errorf("ListenerPIDs() = %v, want the new pid %d and not the old %d", pids, newPID, firstPID)
	}

	// The new subscription delivers.
	fltMustSettle(t, ctx, q, after)
	if err := each.await(ctx, "jobs settled after the reconnect", after); err != nil {
		t.Fatal(err)
	}

	s := w.Stats()
	t.Logf("%s: half-open listener noticed after %v (%v); jobs settled during the cut resolved %v after it; total %v",
		bk.name, took.Round(time.Millisecond), why, healed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Logf("stats: reconnects %d, listen errors %d, reads %+v, resolved %+v, last error %v",
		s.Reconnects, s.ListenErrors, s.Reads, s.Resolved, s.LastError)
	if s.Reconnects < 1 || s.ListenErrors < 1 {
		t.Errorf("Stats: reconnects %d, listen errors %d; want at least 1 each", s.Reconnects, s.ListenErrors)
	}
	if s.Reads.Poll != 0 || s.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", s.Reads.Poll, s.Resolved.Poll)
	}
	if s.Pending != 0 || s.NotFound != 0 {
		t.Errorf("Stats: pending %d, not found %d; want 0", s.Pending, s.NotFound)
	}
}
