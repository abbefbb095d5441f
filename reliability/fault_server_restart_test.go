package reliability_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
)

// TestFaultServerRestart: the server itself goes away under a running Watcher
// (a private cluster, stopped with pg_ctl, held down for a measured window,
// then started again) while jobs settle before, during (as soon as it is
// back) and after the outage.
//
//   - Waits pending across the outage resolve once the server is back, with
//     the right states; the poll (1h) plays no part.
//   - A wait made during the outage keeps waiting until its own context
//     ends: a short one returns context.DeadlineExceeded, never a database
//     error; a long one resolves after the restart, and so does a new wait
//     on the job whose short wait gave up.
//   - Nothing spins while the server is down: status reads and listen
//     attempts in the window stay within what the backoff schedule allows.
func TestFaultServerRestart(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			fltTestServerRestart(t, bk)
		})
	}
}

func fltTestServerRestart(t *testing.T, bk fltBackendKind) {
	const (
		perGroup   = 100
		backoffMin = 50 * time.Millisecond
		backoffMax = 400 * time.Millisecond
		outage     = 2 * time.Second // how long the server stays down
		shortWait  = 300 * time.Millisecond
	)
	began := time.Now()
	ctx := fltTestContext(t, 80*time.Second)
	srv := fltStartServer(t, ctx)
	serverUp := time.Since(began)
	cfg := fltQueueConfig{dsn: srv.DSN, schema: "jobwatch"}
	q := bk.open(t, cfg)
	if _, err := q.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, q, 3*perGroup+2)
	before, during, after := ids[:perGroup], ids[perGroup:2*perGroup], ids[2*perGroup:3*perGroup]
	late := ids[3*perGroup:] // waited on only from inside the outage

	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, q.driver(rec), rec,
		jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithBackoff(backoffMin, backoffMax),
		jobwatch.WithDebounce(10*time.Millisecond))
	each := fltWatchEach(ctx, w, ids[:3*perGroup])
	if err := rec.await(ctx, "the Watcher listens", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvListen, rec.start, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}
	fltMustSettle(t, ctx, q, before)
	if err := each.await(ctx, "jobs settled before the outage", before); err != nil {
		t.Fatal(err)
	}

	// The outage.
	stopping := time.Now()
	srv.Stop(t, ctx)
	down := time.Now()
	if err := rec.await(ctx, "the subscription fails with the server", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvSubErr, stopping, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}

	// A wait made now, with a short deadline, ends with its own context's
	// error, not the database's, and not before its deadline.
	sctx, cancel := context.WithTimeout(ctx, shortWait)
	t0 := time.Now()
	st, err := w.Wait(sctx, late[0])
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait during the outage = %v, %v; want context.DeadlineExceeded (the database's error must not reach a waiter)", st, err)
	}
	if d := time.Since(t0); d < shortWait {
		t.Errorf("Wait with a %v deadline returned after %v", shortWait, d)
	}
	// One with a long deadline keeps waiting through the outage.
	lateRes := make(chan fltResult, 1)
	go func() {
		st, err := w.Wait(ctx, late[1])
		lateRes <- fltResult{jobwatch.Status{ID: late[1], State: st}, err}
	}()

	// Keep the server down for the rest of the window. This is the fault
	// itself, a stretch of time, not a wait for an event.
	if err := fltHold(ctx, down.Add(outage)); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	evs := rec.snapshot()
	window := up.Sub(down)
	readsOK, readErrs := fltOf(evs, fltEvRead, down, up), fltOf(evs, fltEvReadErr, down, up)
	listens := len(fltOf(evs, fltEvListen, down, up)) + len(fltOf(evs, fltEvListenErr, down, up))
	bound := fltMaxAttempts(window, backoffMin, backoffMax)
	t.Logf("%s: during %v of outage: %d status reads (%d failed), %d listen attempts; the backoff schedule allows at most %d each",
		bk.name, window.Round(time.Millisecond), len(readsOK)+len(readErrs), len(readErrs), listens, bound)
	if len(readsOK) != 0 {
		t.Errorf("%d status reads succeeded while the server was down", len(readsOK))
	}
	if n := len(readErrs); n > bound || n >= 50 {
		t.Errorf("%d status reads in %v of outage: more than the backoff schedule (%v..%v) allows (%d): spinning",
			n, window, backoffMin, backoffMax, bound)
	}
	if n := len(readErrs); n < 1 {
		t.Errorf("no status read was tried during the outage, though waits were made in it")
	}
	if listens > bound || listens >= 50 {
		t.Errorf("%d listen attempts in %v of outage: more than the backoff schedule (%v..%v) allows (%d): spinning",
			listens, window, backoffMin, backoffMax, bound)
	}
	if listens < 2 {
		t.Errorf("%d listen attempts in %v of outage: the Watcher stopped trying to listen", listens, window)
	}
	if st := w.Stats(); st.LastError == nil || st.Listening {
		t.Errorf("Stats during the outage: LastError %v, Listening %v; want an error, not listening", st.LastError, st.Listening)
	}

	// Back up. Jobs settled at once, before the Watcher has necessarily
	// listened again (their notifications may be lost), through a fresh
	// pool: the old one holds connections the shutdown killed.
	srv.Start(t, ctx)
	restarted := time.Now()
	writer := bk.open(t, cfg)
	fltMustSettle(t, ctx, writer, append(append([]jobwatch.JobID(nil), during...), late...))
	if err := each.await(ctx, "jobs settled as the server came back", during); err != nil {
		t.Fatal(err)
	}
	recovered := time.Since(restarted)
	select {
	case r := <-lateRes:
		if r.err != nil || r.st.State != fltWantState(late[1]) {
			t.Errorf("Wait made during the outage = %v, %v; want %v", r.st.State, r.err, fltWantState(late[1]))
		}
	case <-ctx.Done():
		t.Fatalf("the Wait made during the outage never returned: %v", context.Cause(ctx))
	}
	if st, err := w.Wait(ctx, late[0]); err != nil || st != fltWantState(late[0]) {
		t.Errorf("Wait again on the job whose short wait gave up = %v, %v; want %v", st, err, fltWantState(late[0]))
	}

	// And the listener works again: jobs settled now resolve too.
	if err := rec.await(ctx, "the Watcher listens again", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvListen, down, fltForever)) > 0 // it may have begun before pg_ctl returned
	}); err != nil {
		t.Fatal(err)
	}
	fltMustSettle(t, ctx, writer, after)
	if err := each.await(ctx, "jobs settled after the restart", after); err != nil {
		t.Fatal(err)
	}

	s := w.Stats()
	t.Logf("%s: server up in %v; waits resolved %v after the restart; total %v; stats: reconnects %d, listen errors %d, reads %+v, read errors %d, resolved %+v",
		bk.name, serverUp.Round(time.Millisecond), recovered.Round(time.Millisecond), time.Since(began).Round(time.Millisecond),
		s.Reconnects, s.ListenErrors, s.Reads, s.ReadErrors, s.Resolved)
	if s.Reconnects < 1 {
		t.Errorf("Stats.Reconnects = %d after a restart", s.Reconnects)
	}
	if s.Reads.Poll != 0 || s.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", s.Reads.Poll, s.Resolved.Poll)
	}
	if s.Pending != 0 || s.NotFound != 0 {
		t.Errorf("Stats: pending %d, not found %d; want 0", s.Pending, s.NotFound)
	}
}
