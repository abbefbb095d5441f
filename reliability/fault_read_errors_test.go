package reliability_test

import (
	"strings"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// TestFaultStatusReadsFail: every status read fails for a while, with the
// listener still up. The Watcher's backend connects as a role of its own,
// granted SELECT on the queue's tables; the test revokes SELECT on the log
// table (reads fail with "permission denied", SQLSTATE 42501) for 1.5s
// while jobs settle and notify, then grants it back.
//
//   - Failed reads follow the backoff schedule (20ms doubling to 200ms,
//     ±20%): their number stays within what the schedule allows in the
//     window, each gap is at least the schedule's shortest delay for that
//     retry, and notifications arriving meanwhile do not shorten it.
//   - Stats.ReadErrors counts them and Stats.LastError is the permission
//     error.
//   - Once the grant is back, every job settled during the outage resolves
//     (within one capped backoff), and later ones too.
func TestFaultStatusReadsFail(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			fltTestReadsFail(t, bk)
		})
	}
}

func fltTestReadsFail(t *testing.T, bk fltBackendKind) {
	const (
		perGroup   = 30
		backoffMin = 20 * time.Millisecond
		backoffMax = 200 * time.Millisecond
		outage     = 1500 * time.Millisecond
		// readCost bounds how long one failed read may take, for the lower
		// bound on their number (a loaded CI machine under -race).
		readCost = 100 * time.Millisecond
	)
	began := time.Now()
	ctx := fltTestContext(t, 60*time.Second)
	schema := pgtest.Schema(t)
	admin := pgtest.Connect(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	// The Watcher's own role.
	role, qrole := fltCreateRole(t, ctx, admin, "reader")

	owner := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: schema + "_"})
	if _, err := owner.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	exec("GRANT USAGE ON SCHEMA " + pgxv5.Identifier{schema}.Sanitize() + " TO " + qrole)
	exec("GRANT SELECT ON " + owner.QueueTable() + ", " + owner.LogTable() + " TO " + qrole)
	reader := bk.open(t, fltQueueConfig{dsn: fltWithUser(t, pgtest.DSN(), role), schema: schema, prefix: schema + "_"})

	ids := fltMustEnqueue(t, ctx, owner, 3*perGroup)
	before, during, after := ids[:perGroup], ids[perGroup:2*perGroup], ids[2*perGroup:]
	rec := fltNewRecorder()
	rec.dumpOnFailure(t)
	w := fltNewWatcher(t, reader.driver(rec), rec,
		jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithBackoff(backoffMin, backoffMax),
		jobwatch.WithDebounce(10*time.Millisecond))
	each := fltWatchEach(ctx, w, ids)
	if err := rec.await(ctx, "the Watcher listens", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvListen, rec.start, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}
	fltMustSettle(t, ctx, owner, before)
	if err := each.await(ctx, "jobs settled before the outage", before); err != nil {
		t.Fatal(err)
	}
	if n := w.Stats().ReadErrors; n != 0 {
		t.Fatalf("Stats.ReadErrors = %d before the outage", n)
	}

	// The outage: the role may no longer read the log table.
	exec("REVOKE SELECT ON " + owner.LogTable() + " FROM " + qrole)
	revoked := time.Now()
	// Jobs settle in three parts spread over the outage; each notifies the
	// Watcher, whose reads keep failing. The pauses shape the outage window
	// (the fault itself); nothing is being waited for.
	parts := [][]jobwatch.JobID{during[:perGroup/3], during[perGroup/3 : 2*perGroup/3], during[2*perGroup/3:]}
	for i, part := range parts {
		if err := fltHold(ctx, revoked.Add(time.Duration(i)*outage/3)); err != nil {
			t.Fatal(err)
		}
		fltMustSettle(t, ctx, owner, part)
	}
	if err := rec.await(ctx, "a status read fails", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvReadErr, revoked, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}
	// Hold the outage to its full length (the fault, not a wait).
	if err := fltHold(ctx, revoked.Add(outage)); err != nil {
		t.Fatal(err)
	}
	during1 := w.Stats()
	if code := bk.sqlstate(during1.LastError); code != "42501" || !strings.Contains(during1.LastError.Error(), "permission denied") {
		t.Errorf("Stats.LastError during the outage = %v (SQLSTATE %q), want the permission error (42501)", during1.LastError, code)
	}
	exec("GRANT SELECT ON " + owner.LogTable() + " TO " + qrole)
	granted := time.Now()

	// Everything settled during the outage resolves.
	if err := each.await(ctx, "jobs settled during the outage", during); err != nil {
		t.Fatal(err)
	}
	recovered := time.Since(granted)
	fltMustSettle(t, ctx, owner, after)
	if err := each.await(ctx, "jobs settled after the outage", after); err != nil {
		t.Fatal(err)
	}

	// The failed reads, against the schedule.
	evs := rec.snapshot()
	errs := fltOf(evs, fltEvReadErr, revoked, granted)
	allErrs := fltOf(evs, fltEvReadErr, rec.start, fltForever)
	s := w.Stats()
	if int(s.ReadErrors) != len(allErrs) {
		t.Errorf("Stats.ReadErrors = %d, but the driver saw %d failed reads", s.ReadErrors, len(allErrs))
	}
	for _, e := range allErrs {
		if code := bk.sqlstate(e.err); code != "42501" {
			t.Errorf("a read failed with %v (SQLSTATE %q), want only permission errors", e.err, code)
		}
	}
	window := granted.Sub(errs[0].at) // from the first failure to the grant
	upper := fltMaxAttempts(window, backoffMin, backoffMax)
	// Even if every delay were at its cap and every read took readCost:
	lower := int(window / (backoffMax + readCost))
	gaps := make([]string, 0, len(errs))
	for i := 1; i < len(errs); i++ {
		gap := errs[i].at.Sub(errs[i-1].at)
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		if least := fltShortestBackoff(i, backoffMin, backoffMax); gap < least {
			t.Errorf("retry %d came %v after the failure before it; the backoff schedule waits at least %v", i, gap, least)
		}
	}
	t.Logf("%s: %d failed reads in the %v from the first failure to the grant (schedule: %d..%d); gaps %v",
		bk.name, len(errs), window.Round(time.Millisecond), lower, upper, gaps)
	t.Logf("%s: resolved %v after the grant; total %v; stats: reads %+v, read errors %d, resolved %+v, notifications %d; last error: %v",
		bk.name, recovered.Round(time.Millisecond), time.Since(began).Round(time.Millisecond),
		s.Reads, s.ReadErrors, s.Resolved, s.Notifications, during1.LastError)
	if n := len(errs); n > upper || n < lower {
		t.Errorf("%d failed reads in %v; the backoff schedule (%v doubling to %v, ±20%%) allows %d to %d",
			n, window, backoffMin, backoffMax, lower, upper)
	}
	if limit := backoffMax + 2*time.Second; recovered > limit {
		t.Errorf("jobs settled during the outage resolved %v after the grant, want within %v (one capped backoff, plus slack)", recovered, limit)
	}
	if s.Reads.Poll != 0 || s.Resolved.Poll != 0 {
		t.Errorf("the safety-net poll ran (reads %d, resolved %d) with a 1h refresh interval", s.Reads.Poll, s.Resolved.Poll)
	}
	if s.Pending != 0 || s.NotFound != 0 {
		t.Errorf("Stats: pending %d, not found %d; want 0", s.Pending, s.NotFound)
	}
}
