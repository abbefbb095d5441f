package pgcore_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// These tests run the change feed of both PostgreSQL backends against the
// real server, with transactions the tests open and interleave themselves.

// backend is what the tests use of backends/pgx and backends/pq.
type backend interface {
	jobwatch.Driver
	jobwatch.ChangeFeed
	Install(ctx context.Context) (pgschema.InstallResult, error)
	Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
}

var backendKinds = []string{"pgx", "pq"}

// env is one installation in a fresh schema, read through one backend,
// written behind its back through raw connections of pool.
type env struct {
	t      testing.TB
	ctx    context.Context
	b      backend
	pool   *pgxpool.Pool
	names  pgschema.Names
	schema string
}

// newEnv installs into a fresh schema and opens kind's backend on it,
// querying through dsn.
func newEnv(t testing.TB, kind, dsn string) *env {
	t.Helper()
	schema := pgtest.Schema(t)
	ctx := pgtest.Context(t)
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	prefix := schema + "_"
	var b backend
	switch kind {
	case "pgx":
		p, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		b, err = jwpgx.New(p, jwpgx.WithSchema(schema), jwpgx.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
	case "pq":
		db, err := sqlx.Open("postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(4)
		t.Cleanup(func() { _ = db.Close() })
		b, err = jwpq.New(db, pgtest.DSN(), jwpq.WithSchema(schema), jwpq.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown backend %q", kind)
	}
	if _, err := b.Install(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := pgschema.NewNames(prefix, schema)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, b: b, pool: pool, names: n, schema: schema}
}

// forEachBackend runs fn as a parallel subtest for each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range backendKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fn(t, kind)
		})
	}
}

// tx is a transaction on a connection of its own.
type tx struct {
	e    *env
	conn *pgxpool.Conn
	tx   pgx.Tx
}

func (e *env) begin() *tx {
	e.t.Helper()
	conn, err := e.pool.Acquire(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	t, err := conn.Begin(e.ctx)
	if err != nil {
		conn.Release()
		e.t.Fatal(err)
	}
	x := &tx{e: e, conn: conn, tx: t}
	e.t.Cleanup(func() { x.end(false) })
	return x
}

// xid assigns the transaction its xid now.
func (x *tx) xid() int64 {
	x.e.t.Helper()
	var xid int64
	if err := x.tx.QueryRow(x.e.ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		x.e.t.Fatal(err)
	}
	return xid
}

// logRow writes a log row for job with status, as PgQueuer's SQL would,
// and returns its id.
func (x *tx) logRow(job int64, status string) int64 {
	x.e.t.Helper()
	var id int64
	err := x.tx.QueryRow(x.e.ctx, "INSERT INTO "+x.e.names.LogTable()+
		" (job_id, status, priority, entrypoint) VALUES ($1, $2::text::"+x.e.names.Qualify(x.e.names.StatusType)+
		", 0, 'test') RETURNING id", job, status).Scan(&id)
	if err != nil {
		x.e.t.Fatal(err)
	}
	return id
}

// end commits or rolls back; a second call does nothing.
func (x *tx) end(commit bool) {
	if x.conn == nil {
		return
	}
	var err error
	if commit {
		err = x.tx.Commit(x.e.ctx)
	} else {
		err = x.tx.Rollback(x.e.ctx)
	}
	x.conn.Release()
	x.conn = nil
	if err != nil {
		x.e.t.Fatal(err)
	}
}

// feed reads a change feed and keeps its cursor.
type feed struct {
	e   *env
	cur jobwatch.Cursor
}

// start starts a feed, reading until it vouches (nothing of this schema
// is running, so that is at once).
func (e *env) start() *feed {
	e.t.Helper()
	f := &feed{e: e}
	f.read()
	for _, partial := pgcore.CursorGaps(f.cur); partial; _, partial = pgcore.CursorGaps(f.cur) {
		f.read()
	}
	return f
}

// read is one Changes call: the statuses by job, and whether it was partial.
func (f *feed) read() (map[int64]string, bool) {
	f.e.t.Helper()
	cs, err := f.e.b.Changes(f.e.ctx, f.cur)
	if err != nil {
		f.e.t.Fatalf("Changes: %v", err)
	}
	f.cur = cs.Cursor
	out := map[int64]string{}
	for _, st := range cs.Statuses {
		out[int64(st.ID)] = st.State.String()
	}
	return out, cs.Partial
}

// newestXid sets up the defect's scenario: A takes xid a, B takes a+1 and
// writes job 1's terminal row (id L) and stays open, A writes job 2's row
// (L+1) and commits. The snapshot is then b:b:, B's xid being neither
// below xmin nor in xip. It returns B, still open.
func (e *env) newestXid(job1, job2 int64) *tx {
	e.t.Helper()
	a, b := e.begin(), e.begin()
	xa := a.xid()
	xb := b.xid()
	if xb <= xa {
		e.t.Fatalf("xids %d, %d: want B's newer", xa, xb)
	}
	l := b.logRow(job1, "successful")
	if l2 := a.logRow(job2, "successful"); l2 <= l {
		e.t.Fatalf("log ids %d, %d: want A's after B's", l, l2)
	}
	a.end(true)
	return b
}

// A gap whose transaction holds the newest xid is not retired while it
// runs, however many reads there are: its row arrives when it commits.
func TestFeedGapOfNewestXid(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, pgtest.DSN())
		f := e.start()
		b := e.newestXid(1, 2)
		for i := range 5 {
			got, partial := f.read()
			if _, ok := got[1]; ok || partial {
				t.Fatalf("read %d with B open: %v, partial %v", i, got, partial)
			}
			if gaps, _ := pgcore.CursorGaps(f.cur); gaps != 1 {
				t.Fatalf("read %d with B open: %d gaps, want 1", i, gaps)
			}
		}
		b.end(true)
		if got, _ := f.read(); got[1] != "successful" {
			t.Fatalf("read after B committed: %v, want job 1 successful", got)
		}
	})
}

// A cursor started while the transaction holding the newest xid runs
// stays partial until it has ended, and is partial at the first read after
// that, so the by-id re-read that follows finds job 1.
func TestFeedFreshCursorDuringNewestXid(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, pgtest.DSN())
		b := e.newestXid(1, 2)
		f := &feed{e: e}
		if _, partial := f.read(); !partial {
			t.Fatal("a fresh cursor is not partial")
		}
		for i := range 5 {
			if got, partial := f.read(); len(got) != 0 || !partial {
				t.Fatalf("read %d with B open: %v, partial %v; want nothing, partial", i, got, partial)
			}
		}
		b.end(true)
		got, partial := f.read()
		if got[1] != "successful" && !partial {
			t.Fatalf("first read after B committed: %v, not partial: job 1 is lost", got)
		}
		if got, partial := f.read(); partial || len(got) != 0 {
			t.Fatalf("second read after B committed: %v, partial %v; want nothing, vouched", got, partial)
		}
	})
}
