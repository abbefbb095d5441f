package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// TestFaultListenerKilled: pg_terminate_backend on the listening connection,
// twenty times, while 10,000 jobs settle in batches from another goroutine.
// Every waiter, one WaitEach over all 10,000 jobs and 2,000 concurrent
// Waits on a fifth of them, resolves with the right state (a mix of
// successful, exception and canceled). The safety-net poll is an hour, so
// what repairs the notifications lost while the listener was down can only
// be the full read that follows each reconnect.
//
// 2,000 rather than 10,000 separate Wait goroutines: the race detector
// allows at most 8,128 live goroutines. The WaitEach covers all 10,000.
func TestFaultListenerKilled(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			fltTestListenerKilled(t, bk)
		})
	}
}

func fltTestListenerKilled(t *testing.T, bk fltBackendKind) {
	const (
		jobs    = 10_000
		kills   = 20
		perKill = jobs / kills // settled per round: half before the kill, half after
		every   = 5            // a separate Wait on every 5th job
	)
	began := time.Now()
	ctx := fltTestContext(t, 75*time.Second)
	schema := pgtest.Schema(t)
	q := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: schema + "_"})
	if _, err := q.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, q, jobs)
	admin := pgtest.Connect(t) // used by the killer goroutine only

	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, q.driver(rec), rec,
		jobwatch.WithRefreshInterval(time.Hour), // the poll must not be what saves us
		jobwatch.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		jobwatch.WithDebounce(20*time.Millisecond))

	// The waiters.
	each := fltWatchEach(ctx, w, ids)
	var (
		waits    sync.WaitGroup
		waitMu   sync.Mutex
		waitErrs []error
	)
	single := 0
	for i, id := range ids {
		if i%every != 0 {
			continue
		}
		single++
		waits.Add(1)
		go func() {
			defer waits.Done()
			st, err := w.Wait(ctx, id)
			if err == nil && st == fltWantState(id) {
				return
			}
			waitMu.Lock()
			defer waitMu.Unlock()
			waitErrs = append(waitErrs, fmt.Errorf("Wait(%d) = %v, %v; want %v", id, st, err, fltWantState(id)))
		}()
	}
	// Registration is not signalled: poll Stats until every wait is in.
	if err := fltEventually(ctx, "every wait is registered", func() bool {
		return w.Stats().Waiters == jobs+single
	}); err != nil {
		t.Fatal(err)
	}

	// The killer and the completer. Round r: the completer settles the
	// first half of its jobs while the listener is up; the killer then
	// terminates the current listener; the completer settles the second
	// half at once, while the Watcher is reconnecting.
	halfDone := make([]chan struct{}, kills)
	killed := make([]chan struct{}, kills)
	for r := range kills {
		halfDone[r], killed[r] = make(chan struct{}), make(chan struct{})
	}
	errc := make(chan error, 2)
	// The workers use the admin connection and the pools: on an early
	// failure, stop them before those close (cleanups run last-in
	// first-out).
	wctx, stop := context.WithCancel(ctx)
	var workers sync.WaitGroup
	workersDone := make(chan struct{})
	t.Cleanup(func() { stop(); <-workersDone })
	workers.Add(2)
	go func() { // completer
		defer workers.Done()
		for r := range kills {
			round := ids[r*perKill : (r+1)*perKill]
			if err := fltSettle(wctx, q, round[:perKill/2]); err != nil {
				errc <- err
				return
			}
			close(halfDone[r])
			select {
			case <-killed[r]:
			case <-wctx.Done():
				errc <- fmt.Errorf("completer, round %d: %w", r, context.Cause(wctx))
				return
			}
			if err := fltSettle(wctx, q, round[perKill/2:]); err != nil {
				errc <- err
				return
			}
		}
	}()
	var killedPIDs []uint32
	go func() { // killer
		defer workers.Done()
		seen := 0 // successful Listens already used
		for r := range kills {
			select {
			case <-halfDone[r]:
			case <-wctx.Done():
				errc <- fmt.Errorf("killer, round %d: %w", r, context.Cause(wctx))
				return
			}
			pid, err := fltKillListener(wctx, rec, q, admin, &seen)
			if err != nil {
				errc <- fmt.Errorf("killer, round %d: %w", r, err)
				return
			}
			killedPIDs = append(killedPIDs, pid)
			close(killed[r])
		}
	}()
	go func() { workers.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case err := <-errc:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatalf("the killer and the completer did not finish: %v", context.Cause(ctx))
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	faultsOver := time.Now()

	// Every waiter resolves.
	if err := each.await(ctx, "WaitEach over all jobs", ids); err != nil {
		t.Fatal(err)
	}
	waitsDone := make(chan struct{})
	go func() { waits.Wait(); close(waitsDone) }()
	select {
	case <-waitsDone:
	case <-ctx.Done():
		t.Fatalf("%d separate Waits still blocked: %v", w.Stats().Waiters, context.Cause(ctx))
	}
	for _, err := range waitErrs {
		t.Error(err)
	}
	select {
	case r, more := <-each.ch:
		if more {
			t.Errorf("WaitEach yielded %v, %v after every job had settled", r.st, r.err)
		}
	case <-ctx.Done():
		t.Errorf("WaitEach did not end after every job had settled: %v", context.Cause(ctx))
	}

	// The last kill may land after the last job settled: its reconnect
	// then comes after the waits returned. Nothing else signals it.
	if err := fltEventually(ctx, "the reconnect after the last kill", func() bool { return w.Stats().Reconnects >= kills }); err != nil {
		t.Error(err)
	}
	st := w.Stats()
	evs := rec.snapshot()
	subErrs := fltOf(evs, fltEvSubErr, rec.start, fltForever)
	t.Logf("%s: %d jobs, %d kills (pids %v); faults over after %v, all settled %v later; total %v",
		bk.name, jobs, kills, killedPIDs, faultsOver.Sub(began).Round(time.Millisecond),
		time.Since(faultsOver).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Logf("stats: reconnects %d, listen errors %d, reads %+v, read errors %d, resolved %+v, notifications %d",
		st.Reconnects, st.ListenErrors, st.Reads, st.ReadErrors, st.Resolved, st.Notifications)
	if st.Reconnects < kills {
		t.Errorf("Stats.Reconnects = %d after %d kills, want >= %d", st.Reconnects, kills, kills)
	}
	if len(subErrs) < kills {
		t.Errorf("%d subscriptions failed after %d kills, want >= %d", len(subErrs), kills, kills)
	}
	if st.Reads.Resync < 1 {
		t.Errorf("Stats.Reads.Resync = %d: no full read after a reconnect", st.Reads.Resync)
	}
	if st.Reads.Poll != 0 || st.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", st.Reads.Poll, st.Resolved.Poll)
	}
	if st.Resolved.Total() != jobs || st.NotFound != 0 || st.Pending != 0 || st.Waiters != 0 {
		t.Errorf("Stats: resolved %d (want %d), not found %d, pending %d, waiters %d",
			st.Resolved.Total(), jobs, st.NotFound, st.Pending, st.Waiters)
	}
}

// fltKillListener terminates the server process of the Watcher's current
// subscription: the newest successful Listen after the first *seen, whose
// pid the backend's ListenerPIDs also reports. It waits (on the recorder,
// not a timer) for such a subscription.
func fltKillListener(ctx context.Context, rec *fltRecorder, q *fltQueue, admin *pgxv5.Conn, seen *int) (uint32, error) {
	for {
		var (
			pid     uint32
			listens int
		)
		err := rec.await(ctx, "a new subscription is live", func(evs []fltEvent) bool {
			listens = 0
			for _, e := range evs {
				if e.kind == fltEvListen {
					listens++
					pid = e.pid
				}
			}
			return listens > *seen
		})
		if err != nil {
			return 0, err
		}
		*seen = listens
		if pid == 0 {
			return 0, fmt.Errorf("the backend's subscription reports no server pid (Subscription.PID() == 0); ListenerPIDs() = %v", q.listener.ListenerPIDs())
		}
		if !slices.Contains(q.listener.ListenerPIDs(), pid) {
			continue // already gone; the next one will do
		}
		var ok bool
		if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ok); err != nil {
			return 0, fmt.Errorf("pg_terminate_backend(%d): %w", pid, err)
		}
		if ok {
			return pid, nil
		}
	}
}
