package reliability_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// The call timeout of these tests (jobwatch.WithCallTimeout), and how long
// after the cut every waiter must have resolved. The bound leaves room for
// a few dead connections, each costing one call timeout plus pgx's 1s
// deadline delay after a cancelled query, and for -race on two cores; it is
// far below the 1h poll, the only other thing that could resolve them.
const (
	fltCallTimeout = 500 * time.Millisecond
	fltHealBound   = 15 * time.Second
)

// TestFaultHalfOpenReadConnection: the status reads go through pgtest's TCP
// proxy, the listener and every write go directly to the server. With the
// Watcher quiet and jobs pending, the proxy blackholes the connections open
// at that moment (the read pool's idle ones: half-open, no FIN, no RST, no
// error), then the jobs settle. Their notifications arrive on the healthy
// listener, and the read they cause takes a dead connection from the pool.
//
//   - That read fails when the call timeout (500ms) ends it, with a
//     deadline error (pq: the backend gives up on the query even though
//     lib/pq, after a cancelled query, waits for an answer that never
//     comes), and counts in Stats.ReadErrors.
//   - The retry, after backoff, runs on a connection opened after the cut
//     (those pass normally) and resolves every waiter within seconds; the
//     poll (1h) plays no part and the listener is never disturbed.
//
// Before the call timeout the read waited forever on the dead connection
// and no waiter ever resolved.
func TestFaultHalfOpenReadConnection(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			fltTestHalfOpenRead(t, bk)
		})
	}
}

func fltTestHalfOpenRead(t *testing.T, bk fltBackendKind) {
	const perGroup = 60
	began := time.Now()
	ctx := fltTestContext(t, 60*time.Second)
	schema := pgtest.Schema(t)
	proxy, proxyDSN := pgtest.NewProxy(t)
	// direct writes (Install, Enqueue, settling) and listens; reader only
	// reads, through the proxy. (For pgx they are two pools; for pq the
	// reader's own listener, on the proxy too, is never used.)
	direct := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: schema + "_"})
	reader := bk.open(t, fltQueueConfig{dsn: proxyDSN, schema: schema, prefix: schema + "_"})
	// Close the proxy before the pools (cleanups run last-in first-out):
	// pgx waits up to 15s for a timed-out connection to drain, and a pool
	// waits for that when it closes.
	t.Cleanup(proxy.Close)
	if _, err := direct.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, direct, 2*perGroup)
	during, after := ids[:perGroup], ids[perGroup:]

	q := &fltQueue{fltLifecycle: reader, listener: direct.listener}
	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, q.driver(rec), rec,
		jobwatch.WithCallTimeout(fltCallTimeout),
		jobwatch.WithRefreshInterval(time.Hour), // the poll must not be what saves us
		jobwatch.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		jobwatch.WithDebounce(10*time.Millisecond))
	each := fltWatchEach(ctx, w, ids)

	// Quiet: listening, and a successful read of every pending job has
	// finished since (the read after subscribing, or the wait's own if it
	// came later). Nothing is left to read until a notification comes, and
	// the read pool holds an idle connection through the proxy.
	if err := rec.await(ctx, "the Watcher listens and reads every job", func(evs []fltEvent) bool {
		l := fltOf(evs, fltEvListen, rec.start, fltForever)
		if len(l) == 0 {
			return false
		}
		for _, r := range fltOf(evs, fltEvRead, l[0].end, fltForever) {
			if r.ids == len(ids) {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}

	// Cut: the read pool's connections go silent; the listener (direct)
	// is not affected.
	cut := time.Now()
	if n := proxy.Blackhole(); n < 1 {
		t.Fatalf("Blackhole affected %d connections; the read pool's idle connection should be one of them", n)
	}
	hctx, cancel := context.WithTimeout(ctx, fltHealBound)
	defer cancel()
	fltMustSettle(t, ctx, direct, during)

	// The read those notifications cause hangs on a dead connection until
	// the call timeout ends it. So does a read already in flight at the
	// cut (the waits' own read can start after the one the quiet state
	// waited for): what counts is a read that failed after the cut.
	var first fltEvent
	if err := rec.await(hctx, "a status read fails after the cut", func(evs []fltEvent) bool {
		for _, e := range fltOf(evs, fltEvReadErr, rec.start, fltForever) {
			if e.end.After(cut) {
				first = e
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(first.err, context.DeadlineExceeded) {
		t.Errorf("the read on the dead connection failed with %v, want the call timeout's deadline", first.err)
	}
	// It waited out the call timeout (less a little for the timer), and
	// not much longer: pgx gives a cancelled query 1s to end before it
	// shuts the socket; allow a second more for a loaded machine.
	if took := first.end.Sub(first.at); took < fltCallTimeout*9/10 || took > fltCallTimeout+2*time.Second {
		t.Errorf("the failed read took %v, want about the call timeout %v", took, fltCallTimeout)
	}

	if err := each.await(hctx, "jobs settled after the cut", during); err != nil {
		t.Fatal(err)
	}
	healed := time.Since(cut)

	// The pool works again: later jobs resolve as well.
	fltMustSettle(t, ctx, direct, after)
	if err := each.await(hctx, "jobs settled once the reads recovered", after); err != nil {
		t.Fatal(err)
	}

	s := w.Stats()
	t.Logf("%s: first read after the cut failed after %v (%v); waiters resolved %v after the cut; total %v",
		bk.name, first.end.Sub(first.at).Round(time.Millisecond), first.err, healed.Round(time.Millisecond),
		time.Since(began).Round(time.Millisecond))
	t.Logf("stats: read errors %d, reads %+v, resolved %+v, reconnects %d, listen errors %d, last error %v",
		s.ReadErrors, s.Reads, s.Resolved, s.Reconnects, s.ListenErrors, s.LastError)
	if s.ReadErrors < 1 {
		t.Errorf("Stats.ReadErrors = %d, want at least 1", s.ReadErrors)
	}
	if !errors.Is(s.LastError, context.DeadlineExceeded) {
		t.Errorf("Stats.LastError = %v, want the call timeout's deadline", s.LastError)
	}
	if s.Reconnects != 0 || s.ListenErrors != 0 {
		t.Errorf("Stats: reconnects %d, listen errors %d; the direct listener should never have failed", s.Reconnects, s.ListenErrors)
	}
	if s.Reads.Poll != 0 || s.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", s.Reads.Poll, s.Resolved.Poll)
	}
	if s.Pending != 0 || s.NotFound != 0 {
		t.Errorf("Stats: pending %d, not found %d; want 0", s.Pending, s.NotFound)
	}

	// pq left the timed-out query running in a goroutine of its own, which
	// ends only when its connection fails: close the proxy now (the
	// Watcher first) so that it has ended before the test returns.
	if err := w.Close(); err != nil {
		t.Errorf("Watcher.Close: %v", err)
	}
	proxy.Close()
}

// TestFaultListenOnDeadPooledConnection (pgx; the lib/pq backend dials a
// connection of its own for each Listen, it never takes one from a pool):
// the backend used for listening has its own pgx pool through pgtest's
// proxy, warmed to hold several idle connections besides the listening
// one. The proxy blackholes all of them; reads and writes go directly.
//
//   - The live subscription's health check (200ms) notices and fails.
//   - The Watcher's next Listen takes a dead idle connection from the pool
//     (pgx pings one idle for over a second, otherwise sends LISTEN on it:
//     either waits forever), and the call timeout (500ms) ends it: Listen
//     fails with a deadline error instead of hanging.
//   - The Watcher retries; once the dead connections are spent the pool
//     dials a fresh one (through the proxy, which passes new connections),
//     the Watcher listens on it, and the read after subscribing resolves
//     the jobs settled during the cut; the poll (1h) plays no part. The new
//     subscription delivers.
//
// Before the call timeout that Listen hung forever, and so did every
// waiter whose notification was lost.
func TestFaultListenOnDeadPooledConnection(t *testing.T) {
	t.Parallel()
	const (
		perGroup = 60
		health   = 200 * time.Millisecond
		warm     = 4 // connections opened in the listening pool before the Watcher starts
	)
	began := time.Now()
	ctx := fltTestContext(t, 60*time.Second)
	schema := pgtest.Schema(t)
	proxy, proxyDSN := pgtest.NewProxy(t)
	direct := fltOpenPgx(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: schema + "_"})

	cfg, err := pgxpool.ParseConfig(proxyDSN)
	if err != nil {
		t.Fatalf("pgx: parse DSN: %v", err)
	}
	cfg.MaxConns = 6
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgx: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	listener, err := jwpgx.New(pool, jwpgx.WithSchema(schema), jwpgx.WithPrefix(schema+"_"), jwpgx.WithHealthCheck(health))
	if err != nil {
		t.Fatalf("pgx: New: %v", err)
	}
	// Close the proxy before the pools (cleanups run last-in first-out):
	// pgx waits up to 15s for a timed-out connection to drain, and a pool
	// waits for that when it closes.
	t.Cleanup(proxy.Close)

	if _, err := direct.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, direct, 3*perGroup)
	before, during, after := ids[:perGroup], ids[perGroup:2*perGroup], ids[2*perGroup:]

	// Warm the pool: warm connections, all idle once released. Listen
	// hijacks one; the health probes borrow and return the others.
	held := make([]*pgxpool.Conn, 0, warm)
	for range warm {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("warming the listening pool: %v", err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}

	q := &fltQueue{fltLifecycle: direct, listener: listener}
	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, q.driver(rec), rec,
		jobwatch.WithCallTimeout(fltCallTimeout),
		jobwatch.WithRefreshInterval(time.Hour), // the poll must not be what saves us
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
	// The path works: notifications come through the proxy.
	fltMustSettle(t, ctx, direct, before)
	if err := each.await(ctx, "jobs settled before the cut", before); err != nil {
		t.Fatal(err)
	}
	// Quiet, as in TestFaultHalfOpenListener: a status read has started
	// after the last of those notifications, so the jobs settled during
	// the cut can only be found by the read after the next subscription.
	notes := fltSettleTxs(before)
	if err := fltAwaitQuiet(ctx, rec, notes); err != nil {
		t.Fatal(err)
	}
	if st := pool.Stat(); st.TotalConns() < warm-1 {
		t.Fatalf("the listening pool holds %d connections besides the listener's, want at least %d", st.TotalConns(), warm-1)
	}

	// Cut: the listening connection and the pool's idle ones go silent.
	cut := time.Now()
	if n := proxy.Blackhole(); n < warm {
		t.Fatalf("Blackhole affected %d connections, want the listener's and at least %d idle ones", n, warm-1)
	}
	fltMustSettle(t, ctx, direct, during)

	var detected time.Time
	if err := rec.await(ctx, "the health check notices the dead connection", func(evs []fltEvent) bool {
		e := fltOf(evs, fltEvSubErr, cut, fltForever)
		if len(e) > 0 {
			detected = e[0].at
			if !errors.Is(e[0].err, jwpgx.ErrUnhealthy) {
				t.Errorf("the subscription failed with %v, want %v", e[0].err, jwpgx.ErrUnhealthy)
			}
		}
		return len(e) > 0
	}); err != nil {
		t.Fatal(err)
	}

	// The next Listen takes a dead pooled connection and the call timeout
	// ends it; a later one succeeds on a fresh connection.
	var (
		failed []fltEvent
		newPID uint32
	)
	hctx, cancel := context.WithTimeout(ctx, fltHealBound)
	defer cancel()
	if err := rec.await(hctx, "the Watcher listens again", func(evs []fltEvent) bool {
		l := fltOf(evs, fltEvListen, detected, fltForever)
		if len(l) == 0 {
			return false
		}
		newPID = l[0].pid
		failed = fltOf(evs, fltEvListenErr, detected, l[0].at)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(failed) == 0 {
		t.Fatalf("the first Listen after the cut succeeded; it should have taken one of the pool's dead idle connections")
	}
	for i, f := range failed {
		if !errors.Is(f.err, context.DeadlineExceeded) {
			t.Errorf("Listen %d after the cut failed with %v, want the call timeout's deadline", i+1, f.err)
		}
		if took := f.end.Sub(f.at); took < fltCallTimeout*9/10 || took > fltCallTimeout+2*time.Second {
			t.Errorf("Listen %d after the cut failed after %v, want about the call timeout %v", i+1, took, fltCallTimeout)
		}
	}
	if newPID == firstPID {
		t.Errorf("the new subscription has the old one's pid %d", newPID)
	}
	if err := each.await(hctx, "jobs settled during the cut", during); err != nil {
		t.Fatal(err)
	}
	healed := time.Since(cut)
	if pids := listener.ListenerPIDs(); !slices.Contains(pids, newPID) || slices.Contains(pids, firstPID) {
		t.Errorf("ListenerPIDs() = %v, want the new pid %d and not the old %d", pids, newPID, firstPID)
	}

	// The new subscription delivers.
	fltMustSettle(t, ctx, direct, after)
	if err := each.await(ctx, "jobs settled after the reconnect", after); err != nil {
		t.Fatal(err)
	}

	s := w.Stats()
	t.Logf("pgx: subscription failed %v after the cut; %d Listens on dead pooled connections failed (%v); jobs settled during the cut resolved %v after it; total %v",
		detected.Sub(cut).Round(time.Millisecond), len(failed), failed[0].err, healed.Round(time.Millisecond),
		time.Since(began).Round(time.Millisecond))
	t.Logf("stats: reconnects %d, listen errors %d, read errors %d, reads %+v, resolved %+v, last error %v",
		s.Reconnects, s.ListenErrors, s.ReadErrors, s.Reads, s.Resolved, s.LastError)
	if s.Reconnects < 1 || s.ListenErrors < 2 {
		t.Errorf("Stats: reconnects %d, listen errors %d; want at least 1 and 2 (the lost subscription and a failed Listen)", s.Reconnects, s.ListenErrors)
	}
	if s.ReadErrors != 0 {
		t.Errorf("Stats.ReadErrors = %d; the reads go directly and should never have failed", s.ReadErrors)
	}
	if s.Reads.Poll != 0 || s.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", s.Reads.Poll, s.Resolved.Poll)
	}
	if s.Pending != 0 || s.NotFound != 0 {
		t.Errorf("Stats: pending %d, not found %d; want 0", s.Pending, s.NotFound)
	}

	// End what the dead connections left behind (pgx's abandoned pings
	// and closes) before the test returns: the Watcher, then the proxy.
	if err := w.Close(); err != nil {
		t.Errorf("Watcher.Close: %v", err)
	}
	proxy.Close()
}
