package pq_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// openDB opens a sqlx pool on the lib/pq driver, closed at cleanup. The
// database is shared with other packages' tests, so pools stay small.
func openDB(t *testing.T, dsn string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	db.SetMaxIdleConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("cannot reach the test database (set %s; tests never skip): %v", pgtest.EnvDSN, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// env is one isolated installation: a fresh schema, and a prefix equal to
// the schema's name so that its channel is not shared with parallel tests.
type env struct {
	t      *testing.T
	ctx    context.Context
	db     *sqlx.DB
	b      *jwpq.Backend
	schema string
	prefix string
}

func newEnv(t *testing.T, opts ...jwpq.Option) *env {
	t.Helper()
	return newEnvDSN(t, pgtest.DSN(), opts...)
}

// newEnvDSN queries through the test database directly and listens through
// listenDSN.
func newEnvDSN(t *testing.T, listenDSN string, opts ...jwpq.Option) *env {
	t.Helper()
	return newEnvDSNs(t, pgtest.DSN(), listenDSN, opts...)
}

// newEnvDSNs queries through dbDSN and listens through listenDSN.
func newEnvDSNs(t *testing.T, dbDSN, listenDSN string, opts ...jwpq.Option) *env {
	t.Helper()
	schema := pgtest.Schema(t)
	db := openDB(t, dbDSN)
	prefix := schema + "_"
	opts = append([]jwpq.Option{jwpq.WithSchema(schema), jwpq.WithPrefix(prefix)}, opts...)
	b, err := jwpq.New(db, listenDSN, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: pgtest.Context(t), db: db, b: b, schema: schema, prefix: prefix}
	if res, err := b.Install(e.ctx); err != nil || !res.Created {
		t.Fatalf("Install = %+v, %v; want created, nil", res, err)
	}
	return e
}

// enqueue adds n plain jobs.
func (e *env) enqueue(n int) []jobwatch.JobID {
	e.t.Helper()
	jobs := make([]queue.NewJob, n)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: "test"}
	}
	ids, err := e.b.Enqueue(e.ctx, jobs...)
	if err != nil {
		e.t.Fatalf("Enqueue: %v", err)
	}
	return ids
}

// jobIn returns a job brought to state st through the real write path.
func (e *env) jobIn(st statemachine.State) jobwatch.JobID {
	e.t.Helper()
	id := e.enqueue(1)[0]
	pgtest.Bring(e.t, e.ctx, e.b, id, st)
	return id
}

// status is the job's current status per FetchStatuses (None if unknown).
func (e *env) status(id jobwatch.JobID) statemachine.State {
	e.t.Helper()
	return pgtest.Status(e.t, e.ctx, e.b, id)
}

// snapshot renders everything stored about a job: its queue row and all its
// log rows.
func (e *env) snapshot(id jobwatch.JobID) string {
	e.t.Helper()
	var s string
	err := e.db.QueryRowxContext(e.ctx, pgtest.SnapshotSQL(e.b.QueueTable(), e.b.LogTable()), int64(id)).Scan(&s)
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	return s
}

// count runs a count(*) query.
func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRowxContext(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// exec runs a statement.
func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.ExecContext(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// listen opens a subscription closed at cleanup.
func (e *env) listen() *jwpq.Subscription {
	e.t.Helper()
	sub, err := e.b.Listen(e.ctx)
	if err != nil {
		e.t.Fatalf("Listen: %v", err)
	}
	e.t.Cleanup(func() { _ = sub.Close() })
	return sub.(*jwpq.Subscription)
}

// eventually polls cond (for conditions nothing signals, such as a counter
// of the drain goroutine) until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		<-tick.C
	}
}
