package pq_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// TestEmptyDSNUsesEnvironment: with an empty DSN, both the pool and the
// listener connect where the PG* environment variables say, as lib/pq
// does.
func TestEmptyDSNUsesEnvironment(t *testing.T) {
	cfg, err := pgconn.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"PGHOST": cfg.Host, "PGPORT": strconv.Itoa(int(cfg.Port)), "PGUSER": cfg.User,
		"PGDATABASE": cfg.Database, "PGPASSWORD": cfg.Password, "PGSSLMODE": "disable"} {
		t.Setenv(k, v)
	}
	schema := pgtest.Schema(t)
	db := openDB(t, "")
	b, err := jwpq.New(db, "", jwpq.WithSchema(schema), jwpq.WithPrefix(schema+"_"))
	if err != nil {
		t.Fatalf("New with an empty DSN: %v", err)
	}
	checkWorks(t, b)
}

// checkWorks installs, listens, enqueues and waits for a job completed
// through b: queries, lifecycle and listener all work.
func checkWorks(t *testing.T, b *jwpq.Backend) {
	t.Helper()
	ctx := pgtest.Context(t)
	if _, err := b.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	w, err := jobwatch.New(b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ids, err := b.Enqueue(ctx, queue.NewJob{Entrypoint: "drivers", DedupeKey: "k"})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	waited := make(chan statemachine.State, 1)
	go func() {
		st, err := w.Wait(ctx, ids[0])
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		waited <- st
	}()
	jobs, err := b.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"drivers"}, Limit: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	if err := b.Exception(ctx, ids[0], queue.TracebackOf(context.DeadlineExceeded)); err != nil {
		t.Fatalf("Exception: %v", err)
	}
	// With the poll an hour away, only a notification ends the wait.
	if st := <-waited; st != statemachine.Exception {
		t.Fatalf("Wait = %s, want exception", st)
	}
	info, err := b.Inspect(ctx, ids[0])
	if err != nil || info.Traceback() == nil || info.Traceback().ExceptionMessage != "context deadline exceeded" {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
}

// openStdlib opens a pool on pgx's database/sql driver, as sqlx sees it.
func openStdlib(t *testing.T) *sqlx.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	db := sqlx.NewDb(stdlib.OpenDB(*cfg), "pgx")
	db.SetMaxOpenConns(6)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// newStdlibBackend is a backend on a fresh schema whose pool runs on pgx's
// database/sql driver.
func newStdlibBackend(t *testing.T) *jwpq.Backend {
	t.Helper()
	schema := pgtest.Schema(t)
	b, err := jwpq.New(openStdlib(t), pgtest.DSN(), jwpq.WithSchema(schema), jwpq.WithPrefix(schema+"_"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPgxStdlibPool: the backend over a *sql.DB of pgx's stdlib driver
// (driver name "pgx") reads, writes and listens.
func TestPgxStdlibPool(t *testing.T) {
	t.Parallel()
	checkWorks(t, newStdlibBackend(t))
}

// TestQueueConformancePgxStdlib: the same write-side script passes with the
// same results over pgx's database/sql driver (dedupe conflicts included:
// pgx's errors are recognized too).
func TestQueueConformancePgxStdlib(t *testing.T) {
	t.Parallel()
	conformance.RunQueue(t, func(t *testing.T) queue.Queue {
		b := newStdlibBackend(t)
		if _, err := b.Install(pgtest.Context(t)); err != nil {
			t.Fatal(err)
		}
		return b
	})
}
