package pgx_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// openPool opens a pool on dsn, closed at cleanup.
func openPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// env is one isolated installation: a fresh schema, and a prefix equal to
// the schema's name so that its channel is not shared with parallel tests.
type env struct {
	t      *testing.T
	ctx    context.Context
	pool   *pgxpool.Pool
	b      *jwpgx.Backend
	schema string
}

func newEnv(t *testing.T, opts ...jwpgx.Option) *env {
	t.Helper()
	return newEnvDSN(t, pgtest.DSN(), opts...)
}

func newEnvDSN(t *testing.T, dsn string, opts ...jwpgx.Option) *env {
	t.Helper()
	schema := pgtest.Schema(t)
	pool := openPool(t, dsn)
	opts = append([]jwpgx.Option{jwpgx.WithSchema(schema), jwpgx.WithPrefix(schema + "_")}, opts...)
	b, err := jwpgx.New(pool, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: pgtest.Context(t), pool: pool, b: b, schema: schema}
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
	err := e.pool.QueryRow(e.ctx, pgtest.SnapshotSQL(e.b.QueueTable(), e.b.LogTable()), int64(id)).Scan(&s)
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	return s
}

// count runs a count(*) query.
func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// listen opens a subscription closed at cleanup.
func (e *env) listen() *jwpgx.Subscription {
	e.t.Helper()
	sub, err := e.b.Listen(e.ctx)
	if err != nil {
		e.t.Fatalf("Listen: %v", err)
	}
	e.t.Cleanup(func() { sub.Close() })
	return sub.(*jwpgx.Subscription)
}
