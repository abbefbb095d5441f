package pq_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// unopenedDB is a handle that never connected (sql.Open does not dial).
func unopenedDB(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestNewValidation(t *testing.T) {
	db := unopenedDB(t)
	dsn := pgtest.DSN()
	cases := []struct {
		name string
		db   *sqlx.DB
		dsn  string
		opts []jwpq.Option
		want error
	}{
		{"nil db", nil, dsn, nil, jwpq.ErrInvalidOption},
		{"unparsable dsn", db, "host=x port=notaport", nil, jwpq.ErrInvalidOption},
		{"bad url scheme", db, "mysql://u@h/d", nil, jwpq.ErrInvalidOption},
		{"nil option", db, dsn, []jwpq.Option{nil}, jwpq.ErrInvalidOption},
		{"negative health check", db, dsn, []jwpq.Option{jwpq.WithHealthCheck(-time.Second)}, jwpq.ErrInvalidOption},
		{"prefix with quote", db, dsn, []jwpq.Option{jwpq.WithPrefix(`a"b`)}, jwpq.ErrInvalidIdentifier},
		{"prefix with semicolon", db, dsn, []jwpq.Option{jwpq.WithPrefix("a;drop table x")}, jwpq.ErrInvalidIdentifier},
		{"prefix too long", db, dsn, []jwpq.Option{jwpq.WithPrefix(strings.Repeat("p", 40))}, jwpq.ErrInvalidIdentifier},
		{"schema with dot", db, dsn, []jwpq.Option{jwpq.WithSchema("a.b")}, jwpq.ErrInvalidIdentifier},
		{"schema with space", db, dsn, []jwpq.Option{jwpq.WithSchema("a b")}, jwpq.ErrInvalidIdentifier},
		{"schema too long", db, dsn, []jwpq.Option{jwpq.WithSchema(strings.Repeat("s", 64))}, jwpq.ErrInvalidIdentifier},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := jwpq.New(c.db, c.dsn, c.opts...)
			if !errors.Is(err, c.want) || b != nil {
				t.Fatalf("New = %v, %v; want an error matching %v", b, err, c.want)
			}
		})
	}
	b, err := jwpq.New(db, dsn, jwpq.WithPrefix("app_"), jwpq.WithSchema("jobs"), jwpq.WithHealthCheck(0))
	if err != nil {
		t.Fatal(err)
	}
	if b.Channel() != "app_ch_pgqueuer" || b.QueueTable() != `"jobs"."app_pgqueuer"` || b.LogTable() != `"jobs"."app_pgqueuer_log"` {
		t.Errorf("names: %s %s %s", b.Channel(), b.QueueTable(), b.LogTable())
	}
	b, err = jwpq.New(db, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if b.Channel() != "ch_pgqueuer" || b.QueueTable() != `"pgqueuer"` {
		t.Errorf("default names: %s %s", b.Channel(), b.QueueTable())
	}
	// lib/pq accepts the empty DSN (all PG* defaults), and so does New.
	for _, empty := range []string{"", "  \t"} {
		if _, err := jwpq.New(db, empty); err != nil {
			t.Errorf("New with DSN %q = %v, want accepted as lib/pq accepts it", empty, err)
		}
	}
}

// The DSN's password never appears in an error or a log line, whichever
// way the DSN spells it and whatever fails.
func TestNoPasswordInErrors(t *testing.T) {
	const pw = "S3cr3t-Pw-7x"
	db := unopenedDB(t)
	for _, dsn := range []string{
		"postgres://user:" + pw + "@127.0.0.1:notaport/db",
		"postgres://user:" + pw + "@127.0.0.1:5432/db?sslmode=bogus",
		"postgres://user@127.0.0.1:5432/db?password=" + pw + "&sslmode=bogus",
		"host=127.0.0.1 password=" + pw + " sslmode=bogus",
		"host=127.0.0.1 password='" + pw + "' port=notaport",
		"host=127.0.0.1 password=" + pw + " 'broken",
	} {
		_, err := jwpq.New(db, dsn)
		if err == nil {
			t.Errorf("New(%q) accepted", strings.ReplaceAll(dsn, pw, "PW"))
			continue
		}
		if !errors.Is(err, jwpq.ErrInvalidOption) {
			t.Errorf("New: %v, want ErrInvalidOption", err)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("New error reveals the password: %v", err)
		}
	}

	// A listener that cannot connect: the error and the logs stay clean.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, dsn := range []string{
		"postgres://user:" + pw + "@" + addr + "/test?sslmode=disable&connect_timeout=2",
		"host=" + strings.Split(addr, ":")[0] + " port=" + strings.Split(addr, ":")[1] +
			" user=u password='" + pw + "' sslmode=disable connect_timeout=2",
	} {
		b, err := jwpq.New(db, dsn, jwpq.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		if r := b.Redact("x " + pw + " y"); strings.Contains(r, pw) {
			t.Errorf("Redact kept the password: %q", r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		sub, err := b.Listen(ctx)
		cancel()
		if err == nil {
			sub.Close()
			t.Fatal("Listen to a closed port succeeded")
		}
		if time.Since(t0) > 5*time.Second {
			t.Errorf("Listen took %v to report a refused connection", time.Since(t0))
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Listen error reveals the password: %v", err)
		}
		t.Logf("Listen error: %v", err)
	}
	if strings.Contains(logs.String(), pw) {
		t.Errorf("logs reveal the password:\n%s", logs.String())
	}
}

// The listener's DSN carries a distinctive application_name, in the DSN's
// own syntax, keeping the caller's name in front.
func TestListenerApplicationName(t *testing.T) {
	db := unopenedDB(t)
	for _, c := range []struct{ dsn, want string }{
		{"postgres://u@h/d?sslmode=disable", "application_name=jobwatch-listener-abc"},
		{"postgres://u@h/d?application_name=svc", "application_name=svc+jobwatch-listener-abc"},
		{"host=h user=u", "host=h user=u application_name='jobwatch-listener-abc'"},
		{"host=h application_name='my app'", "application_name='my app jobwatch-listener-abc'"},
		{"host=h application_name='" + strings.Repeat("n", 80) + "'", "application_name='" + strings.Repeat("n", 63-len(" jobwatch-listener-abc")) + " jobwatch-listener-abc'"},
	} {
		b, err := jwpq.New(db, c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.ListenerDSN("abc"); !strings.Contains(got, c.want) {
			t.Errorf("listener DSN for %q = %q, want it to contain %q", c.dsn, got, c.want)
		}
	}
}

func TestInstallUninstall(t *testing.T) {
	schema := pgtest.Schema(t)
	db := openDB(t, pgtest.DSN())
	ctx := pgtest.Context(t)
	b, err := jwpq.New(db, pgtest.DSN(), jwpq.WithSchema(schema), jwpq.WithPrefix("x_"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Installed(ctx); ok || err != nil {
		t.Fatalf("Installed before Install = %v, %v", ok, err)
	}
	if res, err := b.Install(ctx); !res.Created || err != nil {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	if ok, err := b.Installed(ctx); !ok || err != nil {
		t.Fatalf("Installed after Install = %v, %v", ok, err)
	}
	// The objects are PgQueuer's, prefixed, in the schema.
	var n int
	if err := db.QueryRowxContext(ctx, `SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
		WHERE s.nspname = $1 AND c.relname IN ('x_pgqueuer', 'x_pgqueuer_log', 'x_pgqueuer_statistics', 'x_pgqueuer_schedules')`, schema).Scan(&n); err != nil || n != 4 {
		t.Fatalf("tables in schema: %d, %v", n, err)
	}
	if err := b.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Installed(ctx); ok || err != nil {
		t.Fatalf("Installed after Uninstall = %v, %v", ok, err)
	}
	if err := b.Uninstall(ctx); err != nil {
		t.Fatalf("second Uninstall: %v", err)
	}
	// A schema that does not exist yet is created.
	missing := schema + "_new"
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS "`+missing+`" CASCADE`)
	})
	b2, err := jwpq.New(db, pgtest.DSN(), jwpq.WithSchema(missing))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b2.Install(ctx); !res.Created || err != nil {
		t.Fatalf("Install into a missing schema = %+v, %v", res, err)
	}
	// A partial installation is refused and left alone.
	if _, err := db.ExecContext(ctx, `DROP TRIGGER "tg_pgqueuer_changed" ON "`+missing+`"."pgqueuer"`); err != nil {
		t.Fatal(err)
	}
	if ok, err := b2.Installed(ctx); ok || !errors.Is(err, jwpq.ErrPartialInstall) {
		t.Errorf("Installed on a partial installation = %v, %v", ok, err)
	}
	if res, err := b2.Install(ctx); res.Created || len(res.Changes) > 0 || !errors.Is(err, jwpq.ErrPartialInstall) {
		t.Errorf("Install on a partial installation = %+v, %v", res, err)
	}
}

// catalog renders every object in a schema with its oid, so that a second
// Install that recreated anything would show.
func catalog(t *testing.T, e *env) string {
	t.Helper()
	var s string
	err := e.db.QueryRowxContext(e.ctx, `SELECT string_agg(x, ',' ORDER BY x) FROM (
		SELECT 'c:' || c.relname || ':' || c.oid AS x FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
		UNION ALL SELECT 'p:' || p.proname || ':' || p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
		UNION ALL SELECT 't:' || t.typname || ':' || t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1
		UNION ALL SELECT 'g:' || g.tgname || ':' || g.oid FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
	) o`, e.schema).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInstallTwiceChangesNothing(t *testing.T) {
	e := newEnv(t)
	ids := e.enqueue(3)
	if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"test"}, Limit: 1}); err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	before := catalog(t, e)
	snaps := map[jobwatch.JobID]string{}
	for _, id := range ids {
		snaps[id] = e.snapshot(id)
	}
	res, err := e.b.Install(e.ctx)
	if res.Created || len(res.Changes) > 0 || err != nil {
		t.Fatalf("second Install = %+v, %v; want nothing done, nil", res, err)
	}
	if after := catalog(t, e); after != before {
		t.Errorf("second Install changed the catalog:\nbefore %s\nafter  %s", before, after)
	}
	for _, id := range ids {
		if s := e.snapshot(id); s != snaps[id] {
			t.Errorf("second Install changed job %d:\nbefore %s\nafter  %s", id, snaps[id], s)
		}
	}
}

// FetchStatuses reports the status of the newest log row (created DESC,
// then id DESC), omits unknown ids, and answers an empty list without
// touching the database.
func TestFetchStatusesNewestLogRow(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.jobIn(statemachine.Picked), e.jobIn(statemachine.Queued), e.jobIn(statemachine.Successful)
	log := e.b.LogTable()
	// An older row inserted later (higher id) does not win.
	e.exec(`INSERT INTO `+log+` (created, job_id, status, priority, entrypoint)
		VALUES (now() - interval '1 hour', $1, 'exception', 0, 'test')`, int64(a))
	// A row with the same created as the newest wins by id.
	e.exec(`INSERT INTO `+log+` (created, job_id, status, priority, entrypoint)
		SELECT created, job_id, 'failed', priority, entrypoint FROM `+log+` WHERE job_id = $1 ORDER BY created DESC, id DESC LIMIT 1`, int64(b))
	// A newer row wins even though the queue row says otherwise.
	e.exec(`INSERT INTO `+log+` (created, job_id, status, priority, entrypoint)
		VALUES (now() + interval '1 hour', $1, 'canceled', 0, 'test')`, int64(c))

	got, err := e.b.FetchStatuses(e.ctx, []jobwatch.JobID{a, b, c, a, 1 << 50, 0, -1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[jobwatch.JobID]statemachine.State{a: statemachine.Picked, b: statemachine.Failed, c: statemachine.Canceled}
	if len(got) != len(want) {
		t.Fatalf("FetchStatuses = %v, want %v", got, want)
	}
	for _, s := range got {
		if want[s.ID] != s.State {
			t.Errorf("job %d: %s, want %s", s.ID, s.State, want[s.ID])
		}
	}
	// One id alone takes its own statement, with the same answers.
	for _, id := range []jobwatch.JobID{a, b, c, 1 << 50} {
		got, err := e.b.FetchStatuses(e.ctx, []jobwatch.JobID{id})
		st, known := want[id]
		switch {
		case err != nil:
			t.Errorf("FetchStatuses(%d): %v", id, err)
		case !known && len(got) != 0, known && (len(got) != 1 || got[0].ID != id || got[0].State != st):
			t.Errorf("FetchStatuses(%d) = %v, want %s", id, got, st)
		}
	}

	// Empty input: no query at all (this handle cannot connect).
	closed := unopenedDB(t)
	_ = closed.Close()
	bk, err := jwpq.New(closed, pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]jobwatch.JobID{nil, {}} {
		got, err := bk.FetchStatuses(e.ctx, in)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("FetchStatuses(%v) = %v, %v; want an empty result", in, got, err)
		}
	}
	if _, err := bk.FetchStatuses(e.ctx, []jobwatch.JobID{a}); err == nil {
		t.Errorf("FetchStatuses on a closed pool succeeded")
	}
	// A cancelled ctx fails.
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.b.FetchStatuses(ctx, []jobwatch.JobID{a}); !errors.Is(err, context.Canceled) {
		t.Errorf("FetchStatuses with a cancelled ctx: %v", err)
	}
}

// Concurrent installers of one installation serialise on the advisory
// lock: exactly one creates, none fails.
func TestInstallConcurrent(t *testing.T) {
	schema := pgtest.Schema(t)
	db := openDB(t, pgtest.DSN())
	ctx := pgtest.Context(t)
	const n = 6
	results := make(chan error, n)
	created := make(chan bool, n)
	for range n {
		go func() {
			b, err := jwpq.New(db, pgtest.DSN(), jwpq.WithSchema(schema), jwpq.WithPrefix(schema+"_"))
			if err != nil {
				results <- err
				return
			}
			res, err := b.Install(ctx)
			created <- res.Created
			results <- err
		}()
	}
	count := 0
	for range n {
		if err := <-results; err != nil {
			t.Errorf("concurrent Install: %v", err)
		}
	}
	close(created)
	for c := range created {
		if c {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d concurrent installs created %d times, want once", n, count)
	}
}
