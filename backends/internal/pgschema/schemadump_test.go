package pgschema_test

// Helpers of the tests that compare an installation with PgQueuer's own
// install (testdata/pgqueuer-*, made by scripts/pgqueuer-reference): a
// normalised pg_dump, the trigger probe, and the two PostgreSQL backends
// behind one interface.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/internal/redact"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// referenceSchema is the schema scripts/pgqueuer-reference installs
// PgQueuer into.
const referenceSchema = "pgqueuer_reference"

// variant is one way of naming an installation, as the reference dumps
// have them: default names (resolved through search_path), a prefix, or a
// schema.
type variant struct {
	name      string
	prefix    string
	qualified bool // WithSchema; otherwise the schema is only on search_path
}

var variants = []variant{{"default", "", false}, {"prefix", "myapp_", false}, {"schema", "", true}}

// backend is what the tests use of backends/pgx and backends/pq (their
// InstallResult and NewJob are the same shared types).
type backend interface {
	jobwatch.Driver
	Install(ctx context.Context) (pgschema.InstallResult, error)
	Installed(ctx context.Context) (bool, error)
	Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
}

var backendKinds = []string{"pgx", "pq"}

// forEach runs fn as a parallel subtest, in a fresh schema, for each
// backend and each of vs.
func forEach(t *testing.T, vs []variant, fn func(t *testing.T, kind string, v variant, schema string)) {
	for _, kind := range backendKinds {
		for _, v := range vs {
			name := kind
			if len(vs) > 1 {
				name += "/" + v.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fn(t, kind, v, pgtest.Schema(t))
			})
		}
	}
}

// openBackend returns a backend of kind on its own small pool, for v's
// names in schema (on the connections' search_path when v is not
// qualified).
func openBackend(t *testing.T, kind string, v variant, schema string) backend {
	t.Helper()
	dsn, schemaOpt := withSearchPath(pgtest.DSN(), schema), ""
	if v.qualified {
		dsn, schemaOpt = pgtest.DSN(), schema
	}
	switch kind {
	case "pgx":
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		b, err := jwpgx.New(pool, jwpgx.WithPrefix(v.prefix), jwpgx.WithSchema(schemaOpt))
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "pq":
		db, err := sqlx.Open("postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(4)
		t.Cleanup(func() { _ = db.Close() })
		b, err := jwpq.New(db, dsn, jwpq.WithPrefix(v.prefix), jwpq.WithSchema(schemaOpt))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("unknown backend %q", kind)
	return nil
}

// withSearchPath adds search_path=schema to a DSN (a URL or key=value
// pairs): both drivers send unknown parameters to the server as run-time
// settings.
func withSearchPath(dsn, schema string) string {
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " search_path=" + schema
	case strings.Contains(dsn, "?"):
		return dsn + "&search_path=" + schema
	}
	return dsn + "?search_path=" + schema
}

// names are v's names with the schema made explicit, for SQL the tests
// write themselves.
func names(t *testing.T, v variant, schema string) pgschema.Names {
	t.Helper()
	n, err := pgschema.NewNames(v.prefix, schema)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pgDump returns pg_dump --schema-only of one schema. pg_dump comes with
// the PostgreSQL client; without it the test is skipped, except in CI
// (CI set), where it fails.
func pgDump(t *testing.T, schema string) string {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pg_dump is not installed, and CI is set: install the PostgreSQL client (scripts/ensure-postgres does)")
		}
		t.Skipf("pg_dump is not installed (the PostgreSQL client); in CI this fails")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--schema-only", "--no-owner", "--no-privileges",
		"--schema="+schema, "--dbname="+pgtest.DSN())
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		r := redact.New(redact.Secrets(pgtest.DSN())...)
		t.Fatalf("pg_dump of schema %s: %v: %s", schema, err, r.String(stderr.String()))
	}
	return out.String()
}

// cleanDump keeps a dump's definitions only (no comments, session
// settings, blank lines or pg_dump's \restrict lines, which vary by
// version and run) and writes the schema's name as SCHEMA.
func cleanDump(dump, schema string) string {
	var keep []string
	for _, line := range strings.Split(dump, "\n") {
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "--"), strings.HasPrefix(line, "SET "),
			strings.HasPrefix(line, "SELECT pg_catalog.set_config("),
			strings.HasPrefix(line, `\restrict `), strings.HasPrefix(line, `\unrestrict `):
			continue
		}
		keep = append(keep, line)
	}
	re := regexp.MustCompile(`\b` + regexp.QuoteMeta(schema) + `\b`)
	return re.ReplaceAllString(strings.Join(keep, "\n"), "SCHEMA") + "\n"
}

var functionBody = regexp.MustCompile(`(?s) AS \$\$.*?\$\$;`)

// maskBodies replaces every function body of a clean dump: the reference
// does not store PgQueuer's (its behaviour is compared by the probe).
func maskBodies(dump string) string {
	return functionBody.ReplaceAllString(dump, " AS $$<body>$$;")
}

// readTestdata reads a file of testdata/.
func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatalf("%v (regenerate the references with scripts/pgqueuer-reference)", err)
	}
	return string(b)
}

// reference is PgQueuer's install of v, clean and with its body masked, as
// this server and this pg_dump render it: the reference dump is restored
// into a schema of its own and dumped again, so that another pg_dump or
// server version compares like with like.
func reference(t *testing.T, v variant) string {
	t.Helper()
	schema := pgtest.Schema(t)
	loadReference(t, v, schema)
	return maskBodies(installed(t, schema))
}

// installed is the clean dump of schema.
func installed(t *testing.T, schema string) string {
	t.Helper()
	return cleanDump(pgDump(t, schema), schema)
}

// diffLines describes how got differs from want, line by line.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	count := map[string]int{}
	for _, l := range g {
		count[l]++
	}
	var b strings.Builder
	for _, l := range w {
		if count[l] > 0 {
			count[l]--
			continue
		}
		fmt.Fprintf(&b, "- %s\n", l)
	}
	count = map[string]int{}
	for _, l := range w {
		count[l]++
	}
	for _, l := range g {
		if count[l] > 0 {
			count[l]--
			continue
		}
		fmt.Fprintf(&b, "+ %s\n", l)
	}
	if b.Len() == 0 {
		return "(the same lines, in another order)"
	}
	return b.String()
}

// wantSchema fails the test unless schema's dump, bodies masked, is the
// reference of v.
func wantSchema(t *testing.T, v variant, schema, what string) {
	t.Helper()
	want, got := reference(t, v), maskBodies(installed(t, schema))
	if got != want {
		t.Errorf("%s: the schema differs from PgQueuer's own install (testdata/pgqueuer-%s.sql); - PgQueuer's, + ours:\n%s",
			what, v.name, diffLines(want, got))
	}
}

// probeStep is one step of testdata/trigger-probe.sql.
type probeStep struct {
	name  string
	stmts []string
}

// readProbe parses the probe with queue and channel filled in: the
// statements before the first step, and the steps.
func readProbe(t *testing.T, queue, channel string) (setup []string, steps []probeStep) {
	t.Helper()
	fill := strings.NewReplacer(`:"channel"`, pgschema.QuoteIdentifier(channel), ":queue", queue)
	var stmt strings.Builder
	for _, line := range strings.Split(readTestdata(t, "trigger-probe.sql"), "\n") {
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "--"):
		case strings.HasPrefix(line, `\echo step `):
			steps = append(steps, probeStep{name: strings.TrimPrefix(line, `\echo `)})
		default:
			stmt.WriteString(fill.Replace(line) + "\n")
			if strings.HasSuffix(strings.TrimSpace(line), ";") {
				if len(steps) == 0 {
					setup = append(setup, stmt.String())
				} else {
					steps[len(steps)-1].stmts = append(steps[len(steps)-1].stmts, stmt.String())
				}
				stmt.Reset()
			}
		}
	}
	return setup, steps
}

var sentAt = regexp.MustCompile(`"sent_at" : "[^"]*"`)

// runProbe runs the probe against the queue table (quoted, qualified) on
// one connection that listens on channel, and renders what each step sent
// as scripts/pgqueuer-reference records it. Each step ends with a sentinel
// notification: the connection's own notifications arrive in commit
// order, so everything before the sentinel is the step's; notifications
// of other sessions on the channel are left out.
func runProbe(t *testing.T, queue, channel string) string {
	t.Helper()
	ctx := pgtest.Context(t)
	conn := pgtest.Connect(t)
	pid := conn.PgConn().PID()
	setup, steps := readProbe(t, queue, channel)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("probe: %v\n%s", err, sql)
		}
	}
	for _, s := range setup {
		exec(s)
	}
	notify := func(ctx context.Context, payload string) error {
		_, err := conn.Exec(ctx, "SELECT pg_notify($1::text, $2::text)", channel, payload)
		return err
	}
	var b strings.Builder
	for _, step := range steps {
		b.WriteString(step.name + "\n")
		ns := pgtest.NotificationsOf(t, conn, notify, func() {
			for _, s := range step.stmts {
				exec(s)
			}
		})
		for _, n := range ns {
			if n.PID == pid {
				fmt.Fprintf(&b, "notify %s %s\n", n.Channel, sentAt.ReplaceAllString(n.Payload, `"sent_at" : "<time>"`))
			}
		}
	}
	return b.String()
}

// referenceProbe is what PgQueuer's own trigger sent for v's probe.
func referenceProbe(t *testing.T, v variant) string {
	t.Helper()
	var keep []string
	for _, line := range strings.Split(readTestdata(t, "pgqueuer-"+v.name+"-notify.txt"), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

// wantTrigger fails the test unless the trigger of v's installation in
// schema sends what PgQueuer's sends, step by step. The probe changes the
// queue table (it ends by truncating it).
func wantTrigger(t *testing.T, v variant, schema string) {
	t.Helper()
	n := names(t, v, schema)
	want, got := referenceProbe(t, v), runProbe(t, n.QueueTable(), n.Channel)
	if got != want {
		t.Errorf("the trigger's notifications differ from PgQueuer's (testdata/pgqueuer-%s-notify.txt); - PgQueuer's, + ours:\n%s\nours, step by step:\n%s",
			v.name, diffLines(want, got), got)
	}
}

// execSQL runs sql (several commands, no params) on a plain connection.
func execSQL(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := pgtest.Connect(t).Exec(ctx, sql); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// foreignBody is a trigger function body jobwatch never wrote, standing in
// for PgQueuer's (which the reference does not store).
const foreignBody = "\nBEGIN\n    RETURN NULL; -- not jobwatch's\nEND;\n"

// loadReference creates PgQueuer's install of v in schema (which exists)
// from its reference dump, with foreignBody as the trigger function's body.
func loadReference(t *testing.T, v variant, schema string) {
	t.Helper()
	dump := cleanDump(readTestdata(t, "pgqueuer-"+v.name+".sql"), referenceSchema)
	dump = strings.Replace(dump, "CREATE SCHEMA SCHEMA;\n", "", 1)
	dump = functionBody.ReplaceAllLiteralString(dump, " AS $$"+foreignBody+"$$;")
	execSQL(t, strings.ReplaceAll(dump, "SCHEMA.", pgxv5.Identifier{schema}.Sanitize()+"."))
}

// functionSource is the body of v's trigger function in schema.
func functionSource(t *testing.T, v variant, schema string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var src string
	n := names(t, v, schema)
	if err := pgtest.Connect(t).QueryRow(ctx, "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = to_regprocedure($1)",
		n.Qualify(n.Function)+"()").Scan(&src); err != nil {
		t.Fatal(err)
	}
	return src
}
