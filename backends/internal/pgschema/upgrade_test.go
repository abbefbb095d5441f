package pgschema_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// installLegacy creates, in schema, what jobwatch's installer created
// before it matched PgQueuer's (testdata/jobwatch-legacy-install.sql).
func installLegacy(t *testing.T, v variant, schema string) {
	t.Helper()
	n := names(t, v, schema)
	sql := strings.NewReplacer(
		"{type}", n.Qualify(n.StatusType), "{queue}", n.QueueTable(), "{log}", n.LogTable(),
		"{stats}", n.Qualify(n.Statistics), "{schedules}", n.Qualify(n.Schedules),
		"{function}", n.Qualify(n.Function), "{trigger}", pgschema.QuoteIdentifier(n.Trigger),
		"{channel}", pgschema.QuoteLiteral(n.Channel),
		"{idx_dedupe}", pgschema.QuoteIdentifier(n.IdxDedupe),
		"{idx_dequeue_priority}", pgschema.QuoteIdentifier(n.Queue+"_dequeue_priority_idx"),
		"{idx_dequeue_after}", pgschema.QuoteIdentifier(n.Queue+"_dequeue_after_idx"),
		"{idx_log_job}", pgschema.QuoteIdentifier(n.IdxLogJob),
		"{idx_log_created}", pgschema.QuoteIdentifier(n.IdxLogCreated),
		"{idx_stats_unique}", pgschema.QuoteIdentifier(n.IdxStatsUnique),
	).Replace(readTestdata(t, "jobwatch-legacy-install.sql"))
	if strings.Contains(sql, "{") {
		t.Fatalf("an unfilled name in the legacy install:\n%s", sql)
	}
	execSQL(t, sql)
	if maskBodies(installed(t, schema)) == reference(t, v) {
		t.Fatal("the legacy install already matches PgQueuer's: it tests nothing")
	}
}

// legacyChanges is what Install reports when it upgrades a legacy install.
func legacyChanges(n pgschema.Names) []string {
	return []string{
		"renamed index " + n.Queue + "_dequeue_priority_idx to " + n.IdxDequeuePriority,
		"renamed index " + n.Queue + "_dequeue_after_idx to " + n.IdxDequeueAfter,
		"created index " + n.IdxPriorityID,
		"created index " + n.IdxUpdatedID,
		"created index " + n.IdxQueueManager,
		"created index " + n.IdxLogNotAggregated,
		"created index " + n.IdxLogStatus,
		"replaced function " + n.Function + "(): an UPDATE no longer notifies",
	}
}

// tableContents renders every row of the installation's four tables.
func tableContents(t *testing.T, n pgschema.Names) string {
	t.Helper()
	ctx := pgtest.Context(t)
	conn := pgtest.Connect(t)
	var b strings.Builder
	for _, tbl := range []string{n.QueueTable(), n.LogTable(), n.Qualify(n.Statistics), n.Qualify(n.Schedules)} {
		var rows string
		if err := conn.QueryRow(ctx, "SELECT COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM "+tbl+" AS t").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		b.WriteString(tbl + ":\n" + rows + "\n")
	}
	return b.String()
}

// someJobs writes jobs in every kind of state through b, plus a schedule
// and a statistics row, and returns the job ids.
func someJobs(t *testing.T, ctx context.Context, b backend, n pgschema.Names) []jobwatch.JobID {
	t.Helper()
	ids, err := b.Enqueue(ctx, queue.NewJob{Entrypoint: "a", Payload: []byte("p"), DedupeKey: "k"},
		queue.NewJob{Entrypoint: "b", Priority: 5, Headers: map[string]any{"h": 1}},
		queue.NewJob{Entrypoint: "c"}, queue.NewJob{Entrypoint: "d"},
		queue.NewJob{Entrypoint: "e"}, queue.NewJob{Entrypoint: "f"})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range []statemachine.State{statemachine.Queued, statemachine.Picked, statemachine.Successful,
		statemachine.Exception, statemachine.Failed, statemachine.Canceled} {
		pgtest.Bring(t, ctx, b, ids[i], st)
	}
	execSQL(t, "INSERT INTO "+n.Qualify(n.Schedules)+" (expression, entrypoint) VALUES ('* * * * *', 'a');\n"+
		"INSERT INTO "+n.Qualify(n.Statistics)+" (count, priority, status, entrypoint) VALUES (3, 0, 'successful', 'a')")
	return ids
}

func statuses(t *testing.T, ctx context.Context, b backend, ids []jobwatch.JobID) []jobwatch.Status {
	t.Helper()
	st, err := b.FetchStatuses(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(st, func(a, b jobwatch.Status) int { return int(a.ID - b.ID) })
	return st
}

// TestInstallUpgradesEarlierJobwatch: Install over what an earlier jobwatch
// installed renames its two indexes to PgQueuer's names, creates the five
// missing ones and replaces the function that notified on every UPDATE,
// reports exactly that, and leaves every row of every table as it was. The
// result is PgQueuer's schema and trigger behaviour; a second Install
// changes nothing.
func TestInstallUpgradesEarlierJobwatch(t *testing.T) {
	t.Parallel()
	forEach(t, variants, func(t *testing.T, kind string, v variant, schema string) {
		installLegacy(t, v, schema)
		n := names(t, v, schema)
		b := openBackend(t, kind, v, schema)
		ctx := pgtest.Context(t)
		ids := someJobs(t, ctx, b, n)
		rows, st := tableContents(t, n), statuses(t, ctx, b, ids)

		res, err := b.Install(ctx)
		if err != nil || res.Created || !slices.Equal(res.Changes, legacyChanges(n)) {
			t.Fatalf("Install over the legacy install = %+v, %v; want changes\n%s", res, err, strings.Join(legacyChanges(n), "\n"))
		}
		if got := tableContents(t, n); got != rows {
			t.Errorf("the upgrade changed data; - before, + after:\n%s", diffLines(rows, got))
		}
		if got := statuses(t, ctx, b, ids); !slices.Equal(got, st) {
			t.Errorf("statuses %v -> %v", st, got)
		}
		wantSchema(t, v, schema, "upgraded install")
		if res, err := b.Install(ctx); err != nil || res.Created || len(res.Changes) > 0 {
			t.Errorf("second Install = %+v, %v; want nothing done", res, err)
		}
		wantTrigger(t, v, schema)
	})
}

// TestInstallUpgradeConcurrent: installers racing over a legacy install
// serialise on the advisory lock: one upgrades, the others find nothing to
// do, none fails.
func TestInstallUpgradeConcurrent(t *testing.T) {
	t.Parallel()
	forEach(t, variants[2:], func(t *testing.T, kind string, v variant, schema string) {
		installLegacy(t, v, schema)
		n := names(t, v, schema)
		ctx := pgtest.Context(t)
		const racers = 5
		bs := make([]backend, racers)
		for i := range bs {
			bs[i] = openBackend(t, kind, v, schema)
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			results []pgschema.InstallResult
			errs    []error
		)
		for _, b := range bs {
			wg.Go(func() {
				res, err := b.Install(ctx)
				mu.Lock()
				defer mu.Unlock()
				results = append(results, res)
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		upgraded := 0
		for _, res := range results {
			switch {
			case res.Created:
				t.Errorf("an installer created over an existing install: %+v", res)
			case slices.Equal(res.Changes, legacyChanges(n)):
				upgraded++
			case len(res.Changes) > 0:
				t.Errorf("an installer made part of the upgrade: %+v", res)
			}
		}
		if len(errs) > 0 || upgraded != 1 {
			t.Fatalf("%d concurrent installs: %d upgraded, errors %v", racers, upgraded, errs)
		}
		wantSchema(t, v, schema, "after concurrent installs")
	})
}

// TestInstallUpgradeRefusesPartial: a legacy install missing an object
// (here its trigger) is refused and left exactly as it was, old index
// names and all.
func TestInstallUpgradeRefusesPartial(t *testing.T) {
	t.Parallel()
	forEach(t, variants[1:2], func(t *testing.T, kind string, v variant, schema string) {
		installLegacy(t, v, schema)
		n := names(t, v, schema)
		execSQL(t, "DROP TRIGGER "+pgschema.QuoteIdentifier(n.Trigger)+" ON "+n.QueueTable())
		before := installed(t, schema)
		b := openBackend(t, kind, v, schema)
		res, err := b.Install(pgtest.Context(t))
		if !errors.Is(err, pgschema.ErrPartialInstall) || res.Created || len(res.Changes) > 0 {
			t.Fatalf("Install over a partial legacy install = %+v, %v; want ErrPartialInstall", res, err)
		}
		if after := installed(t, schema); after != before {
			t.Errorf("a refused Install changed the schema; - before, + after:\n%s", diffLines(before, after))
		}
	})
}

// TestInstallUpgradeAfterPgQueuerUpgrade: PgQueuer's own upgrade, run over
// a legacy jobwatch install, adds its indexes next to jobwatch's two
// differently named copies, and an index a fresh install does not have.
// Install drops the copies, creates what is still missing, replaces the
// function, and leaves PgQueuer's extra index alone.
func TestInstallUpgradeAfterPgQueuerUpgrade(t *testing.T) {
	t.Parallel()
	forEach(t, variants[:1], func(t *testing.T, kind string, v variant, schema string) {
		installLegacy(t, v, schema)
		n := names(t, v, schema)
		q := n.QueueTable()
		heartbeat := n.Queue + "_heartbeat_id_id1_idx"
		execSQL(t, "CREATE INDEX "+pgschema.QuoteIdentifier(n.IdxDequeuePriority)+" ON "+q+" (entrypoint, priority DESC, id ASC) WHERE status = 'queued';\n"+
			"CREATE INDEX "+pgschema.QuoteIdentifier(n.IdxDequeueAfter)+" ON "+q+" (entrypoint, execute_after) WHERE status = 'queued';\n"+
			"CREATE INDEX "+pgschema.QuoteIdentifier(heartbeat)+" ON "+q+" (heartbeat ASC, id DESC) INCLUDE (id) WHERE status = 'picked'")
		b := openBackend(t, kind, v, schema)
		res, err := b.Install(pgtest.Context(t))
		want := append([]string{
			"dropped index " + n.Queue + "_dequeue_priority_idx (a duplicate of " + n.IdxDequeuePriority + ")",
			"dropped index " + n.Queue + "_dequeue_after_idx (a duplicate of " + n.IdxDequeueAfter + ")",
		}, legacyChanges(n)[2:]...)
		if err != nil || res.Created || !slices.Equal(res.Changes, want) {
			t.Fatalf("Install = %+v, %v; want changes\n%s", res, err, strings.Join(want, "\n"))
		}
		// The schema is PgQueuer's plus the one index its upgrade adds.
		got := maskBodies(installed(t, schema))
		var extra []string
		for _, line := range strings.Split(got, "\n") {
			if strings.Contains(line, heartbeat) {
				extra = append(extra, line)
			}
		}
		if len(extra) != 1 {
			t.Fatalf("PgQueuer's extra index is gone or changed: %q", extra)
		}
		if rest, want := strings.Replace(got, extra[0]+"\n", "", 1), reference(t, v); rest != want {
			t.Errorf("the schema differs from PgQueuer's; - PgQueuer's, + ours:\n%s", diffLines(want, rest))
		}
	})
}
