package pgx_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	pool := openPool(t, pgtest.DSN())
	if _, err := jwpgx.New(nil); !errors.Is(err, jwpgx.ErrInvalidOption) {
		t.Errorf("New(nil) = %v", err)
	}
	if _, err := jwpgx.New(pool, nil); !errors.Is(err, jwpgx.ErrInvalidOption) {
		t.Errorf("New(nil option) = %v", err)
	}
	if _, err := jwpgx.New(pool, jwpgx.WithHealthCheck(-1)); !errors.Is(err, jwpgx.ErrInvalidOption) {
		t.Errorf("negative health check = %v", err)
	}
	for _, o := range []jwpgx.Option{
		jwpgx.WithPrefix(`a"b`), jwpgx.WithPrefix("a;b"), jwpgx.WithPrefix("a b"), jwpgx.WithPrefix(strings.Repeat("p", 32)),
		jwpgx.WithSchema(`s"`), jwpgx.WithSchema("s;drop table x"), jwpgx.WithSchema("s\x00"), jwpgx.WithSchema(strings.Repeat("s", 64)),
	} {
		if _, err := jwpgx.New(pool, o); !errors.Is(err, jwpgx.ErrInvalidIdentifier) {
			t.Errorf("New with bad name = %v, want ErrInvalidIdentifier", err)
		}
	}
	b, err := jwpgx.New(pool, jwpgx.WithPrefix("ok_"), jwpgx.WithSchema("Some-Schema"), jwpgx.WithHealthCheck(0))
	if err != nil {
		t.Fatal(err)
	}
	if b.Channel() != "ok_ch_pgqueuer" || b.QueueTable() != `"Some-Schema"."ok_pgqueuer"` {
		t.Errorf("names: %s %s", b.Channel(), b.QueueTable())
	}
}

func TestInstallUninstall(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // installs
	if ok, err := e.b.Installed(e.ctx); !ok || err != nil {
		t.Fatalf("Installed = %v, %v", ok, err)
	}
	ids := e.enqueue(3)
	if err := e.b.Apply(e.ctx, statemachine.Complete, ids[0]); err == nil {
		t.Fatal("illegal transition accepted")
	}
	before := e.snapshot(ids[0]) + e.snapshot(ids[1])
	queue := e.count("SELECT count(*) FROM " + e.b.QueueTable())
	logs := e.count("SELECT count(*) FROM " + e.b.LogTable())

	// Installing again changes and destroys nothing.
	res, err := e.b.Install(e.ctx)
	if err != nil || res.Created || len(res.Changes) > 0 {
		t.Fatalf("second Install = %+v, %v; want nothing done, nil", res, err)
	}
	if after := e.snapshot(ids[0]) + e.snapshot(ids[1]); after != before {
		t.Errorf("second Install changed rows:\n%s\n%s", before, after)
	}
	if q, l := e.count("SELECT count(*) FROM "+e.b.QueueTable()), e.count("SELECT count(*) FROM "+e.b.LogTable()); q != queue || l != logs {
		t.Errorf("row counts %d/%d -> %d/%d", queue, logs, q, l)
	}

	if err := e.b.Uninstall(e.ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.b.Installed(e.ctx); ok || err != nil {
		t.Fatalf("Installed after Uninstall = %v, %v", ok, err)
	}
	if n := e.count("SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typtype = 'e'", e.schema); n != 0 {
		t.Errorf("%d enum types left", n)
	}
	if n := e.count("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1", e.schema); n != 0 {
		t.Errorf("%d functions left", n)
	}
	if n := e.count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1", e.schema); n != 0 {
		t.Errorf("%d relations left", n)
	}
	if err := e.b.Uninstall(e.ctx); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
	if res, err := e.b.Install(e.ctx); err != nil || !res.Created {
		t.Fatalf("reinstall = %+v, %v", res, err)
	}
}

func TestInstallConcurrent(t *testing.T) {
	t.Parallel()
	schema := pgtest.Schema(t)
	pool := openPool(t, pgtest.DSN())
	ctx := pgtest.Context(t)
	const n = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		errs    []error
	)
	for range n {
		wg.Go(func() {
			b, err := jwpgx.New(pool, jwpgx.WithSchema(schema), jwpgx.WithPrefix(schema+"_"))
			if err == nil {
				var res jwpgx.InstallResult
				res, err = b.Install(ctx)
				mu.Lock()
				if res.Created {
					created++
				}
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 || created != 1 {
		t.Fatalf("%d concurrent installs: created %d times, errors %v", n, created, errs)
	}
}

func TestInstallCreatesMissingSchema(t *testing.T) {
	t.Parallel()
	// A schema pgtest did not create: drop it at cleanup ourselves.
	parent := pgtest.Schema(t) // only for a unique name and a prefix
	schema := parent + "_new"
	pool := openPool(t, pgtest.DSN())
	ctx := pgtest.Context(t)
	t.Cleanup(func() { pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	b, err := jwpgx.New(pool, jwpgx.WithSchema(schema), jwpgx.WithPrefix(parent+"_"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.Install(ctx); err != nil || !res.Created {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	if ok, err := b.Installed(ctx); !ok || err != nil {
		t.Fatalf("Installed = %v, %v", ok, err)
	}
}

func TestInstallRefusesPartial(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, "DROP TABLE "+strings.Replace(e.b.QueueTable(), "pgqueuer", "pgqueuer_schedules", 1)); err != nil {
		t.Fatal(err)
	}
	queue := e.count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1", e.schema)
	res, err := e.b.Install(e.ctx)
	if res.Created || len(res.Changes) > 0 || !errors.Is(err, jwpgx.ErrPartialInstall) || !strings.Contains(err.Error(), "schedules") {
		t.Fatalf("Install over a partial installation = %+v, %v", res, err)
	}
	if n := e.count("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1", e.schema); n != queue {
		t.Errorf("relations %d -> %d", queue, n)
	}
	if ok, err := e.b.Installed(e.ctx); ok || !errors.Is(err, jwpgx.ErrPartialInstall) {
		t.Errorf("Installed = %v, %v", ok, err)
	}
}

// TestInstalledLayout checks the columns and a few indexes by name (the
// whole schema is compared with PgQueuer's own install in
// backends/internal/pgschema's TestInstallMatchesPgQueuer).
func TestInstalledLayout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rows, err := e.pool.Query(e.ctx, `SELECT table_name, column_name, data_type, is_nullable, COALESCE(column_default, '')
		FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position`, e.schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var tbl, col, typ, null, def string
		if err := rows.Scan(&tbl, &col, &typ, &null, &def); err != nil {
			t.Fatal(err)
		}
		tbl = strings.TrimPrefix(tbl, e.schema+"_")
		def = strings.ReplaceAll(strings.ReplaceAll(def, e.schema+".", ""), e.schema+"_", "")
		if strings.Contains(def, "nextval") {
			def = "nextval"
		}
		got = append(got, strings.Join([]string{tbl, col, typ, null, def}, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"pgqueuer id bigint NO nextval",
		"pgqueuer priority integer NO ",
		"pgqueuer queue_manager_id uuid YES ",
		"pgqueuer created timestamp with time zone NO now()",
		"pgqueuer updated timestamp with time zone NO now()",
		"pgqueuer heartbeat timestamp with time zone NO now()",
		"pgqueuer execute_after timestamp with time zone NO now()",
		"pgqueuer status USER-DEFINED NO ",
		"pgqueuer entrypoint text NO ",
		"pgqueuer dedupe_key text YES ",
		"pgqueuer payload bytea YES ",
		"pgqueuer headers jsonb YES ",
		"pgqueuer attempts integer NO 0",
		"pgqueuer_log id bigint NO ",
		"pgqueuer_log created timestamp with time zone NO now()",
		"pgqueuer_log job_id bigint NO ",
		"pgqueuer_log status USER-DEFINED NO ",
		"pgqueuer_log priority integer NO ",
		"pgqueuer_log entrypoint text NO ",
		"pgqueuer_log traceback jsonb YES ",
		"pgqueuer_log aggregated boolean YES false",
		"pgqueuer_schedules id bigint NO nextval",
		"pgqueuer_schedules expression text NO ",
		"pgqueuer_schedules entrypoint text NO ",
		"pgqueuer_schedules heartbeat timestamp with time zone NO now()",
		"pgqueuer_schedules created timestamp with time zone NO now()",
		"pgqueuer_schedules updated timestamp with time zone NO now()",
		"pgqueuer_schedules next_run timestamp with time zone NO now()",
		"pgqueuer_schedules last_run timestamp with time zone YES ",
		"pgqueuer_schedules status USER-DEFINED YES 'queued'::pgqueuer_status",
		"pgqueuer_statistics id bigint NO nextval",
		"pgqueuer_statistics created timestamp with time zone NO date_trunc('sec'::text, (now() AT TIME ZONE 'UTC'::text))",
		"pgqueuer_statistics count bigint NO ",
		"pgqueuer_statistics priority integer NO ",
		"pgqueuer_statistics status USER-DEFINED NO ",
		"pgqueuer_statistics entrypoint text NO ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var idx string
	if err := e.pool.QueryRow(e.ctx, `SELECT string_agg(indexdef, E'\n' ORDER BY indexname)
		FROM pg_indexes WHERE schemaname = $1`, e.schema).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	idx = strings.ReplaceAll(strings.ReplaceAll(idx, e.schema+".", ""), e.schema+"_", "")
	for _, want := range []string{
		"CREATE UNIQUE INDEX pgqueuer_unique_dedupe_key ON pgqueuer USING btree (dedupe_key) WHERE ((status = ANY (ARRAY['queued'::pgqueuer_status, 'picked'::pgqueuer_status])) AND (dedupe_key IS NOT NULL))",
		"CREATE INDEX pgqueuer_ep_prio_id_idx ON pgqueuer USING btree (entrypoint, priority DESC, id) WHERE (status = 'queued'::pgqueuer_status)",
		"CREATE INDEX pgqueuer_ep_ea_idx ON pgqueuer USING btree (entrypoint, execute_after) WHERE (status = 'queued'::pgqueuer_status)",
		"CREATE INDEX pgqueuer_log_job_id_status ON pgqueuer_log USING btree (job_id, created DESC)",
		"CREATE INDEX pgqueuer_log_created ON pgqueuer_log USING btree (created)",
		"CREATE UNIQUE INDEX pgqueuer_statistics_unique_count ON pgqueuer_statistics USING btree (priority, date_trunc('sec'::text, (created AT TIME ZONE 'UTC'::text)), status, entrypoint)",
	} {
		if !strings.Contains(idx, want) {
			t.Errorf("missing index %s\nhave:\n%s", want, idx)
		}
	}
}
