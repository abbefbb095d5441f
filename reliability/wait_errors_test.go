package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

// TestWaitErrorsSayWhy: on the real database, through each backend, a
// wait that ends with its ctx says what was last known of the job and of
// the database (invariant 9), and a queue that is not installed ends its
// waits with ErrNotInstalled at the not-found grace.
//
//   - wrong port: the job was never read; DriverErr is the connect error.
//   - revoked SELECT: DriverErr is the permission error (42501), and the
//     wait keeps retrying past the grace, because a grant can come back.
//   - dropped listening connection (the listener's path refuses new
//     connections; reads still work): last seen queued, DriverErr the
//     listener's error.
//   - held at the deadline: last seen failed, no DriverErr.
//   - a prefix that is not installed: ErrNotInstalled, naming the prefix
//     and schema, at the grace and not at the deadline.
func TestWaitErrorsSayWhy(t *testing.T) {
	t.Parallel()
	for _, bk := range fltKinds {
		t.Run(bk.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range waitErrorCases {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.run(t, bk)
				})
			}
		})
	}
}

var waitErrorCases = []struct {
	name string
	run  func(t *testing.T, bk fltBackendKind)
}{
	{"wrong port", waitWrongPort},
	{"revoked SELECT", waitRevoked},
	{"dropped listening connection", waitListenerDropped},
	{"held at the deadline", waitHeld},
	{"not installed", waitNotInstalled},
}

// waitTimeout is how long each wait that must end with its ctx runs: long
// enough for several reads and retries on a loaded machine.
const waitTimeout = 2 * time.Second

// waitOpts are the Watcher's options in these tests: quick retries, a
// short grace, no poll.
func waitOpts() []jobwatch.Option {
	return []jobwatch.Option{
		jobwatch.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		jobwatch.WithNotFoundGrace(300 * time.Millisecond),
		jobwatch.WithRefreshInterval(time.Hour),
		jobwatch.WithDebounce(5 * time.Millisecond),
	}
}

// installed opens an installed queue in a fresh schema.
func installed(t *testing.T, ctx context.Context, bk fltBackendKind) (*fltQueue, string) {
	t.Helper()
	schema := pgtest.Schema(t)
	q := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: schema + "_"})
	if _, err := q.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	return q, schema
}

// waitUntilDeadline waits on id until a ctx of waitTimeout ends and
// returns the WaitError, failing the test when the error is anything else.
func waitUntilDeadline(t *testing.T, w *jobwatch.Watcher, id jobwatch.JobID) *jobwatch.WaitError {
	t.Helper()
	we, err := waitEnded(w, id)
	if err != nil {
		t.Fatal(err)
	}
	return we
}

// waitEnded is waitUntilDeadline for any goroutine.
func waitEnded(w *jobwatch.Watcher, id jobwatch.JobID) (*jobwatch.WaitError, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := w.Wait(ctx, id)
	var we *jobwatch.WaitError
	switch {
	case !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("Wait = %s, %v; want a *WaitError matching context.DeadlineExceeded", st, err)
	case errors.Is(err, jobwatch.ErrNotInstalled):
		return nil, fmt.Errorf("Wait = %v; the queue is installed", err)
	case we.ID != id:
		return nil, fmt.Errorf("WaitError.ID = %d, want %d", we.ID, id)
	}
	return we, nil
}

func waitWrongPort(t *testing.T, bk fltBackendKind) {
	u, err := url.Parse(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: bound, then released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	ln.Close()
	q := bk.open(t, fltQueueConfig{dsn: u.String(), prefix: "nowhere_"})
	rec := fltNewRecorder()
	w := fltNewWatcher(t, q.driver(rec), rec, waitOpts()...)
	we := waitUntilDeadline(t, w, 1)
	if we.LastState != statemachine.None {
		t.Errorf("LastState = %s, want none (no read ever worked)", we.LastState)
	}
	if we.DriverErr == nil || !strings.Contains(we.Error(), "refused") {
		t.Errorf("WaitError = %v (DriverErr %v), want it to carry the refused connection", we, we.DriverErr)
	}
}

func waitRevoked(t *testing.T, bk fltBackendKind) {
	ctx := fltTestContext(t, 30*time.Second)
	owner, schema := installed(t, ctx, bk)
	admin := pgtest.Connect(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	role, qrole := fltCreateRole(t, ctx, admin, "noread")
	// The role sees the schema and the queue table, not the log.
	exec("GRANT USAGE ON SCHEMA " + pgxv5.Identifier{schema}.Sanitize() + " TO " + qrole)
	exec("GRANT SELECT ON " + owner.QueueTable() + " TO " + qrole)
	reader := bk.open(t, fltQueueConfig{dsn: fltWithUser(t, pgtest.DSN(), role), schema: schema, prefix: schema + "_"})
	ids := fltMustEnqueue(t, ctx, owner, 1)
	rec := fltNewRecorder()
	w := fltNewWatcher(t, reader.driver(rec), rec, waitOpts()...)
	we := waitUntilDeadline(t, w, ids[0]) // past the 300ms grace: still waiting
	if we.LastState != statemachine.None {
		t.Errorf("LastState = %s, want none (no read ever worked)", we.LastState)
	}
	if code := bk.sqlstate(we.DriverErr); code != "42501" {
		t.Errorf("DriverErr = %v (SQLSTATE %q), want the permission error 42501", we.DriverErr, code)
	}
	if !strings.Contains(we.Error(), "permission denied") {
		t.Errorf("message %q does not say why", we)
	}
}

func waitListenerDropped(t *testing.T, bk fltBackendKind) {
	ctx := fltTestContext(t, 30*time.Second)
	proxy, viaProxy := pgtest.NewProxy(t)
	schema := pgtest.Schema(t)
	q := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), listenDSN: viaProxy, schema: schema, prefix: schema + "_"})
	if _, err := q.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ids := fltMustEnqueue(t, ctx, q, 1)
	rec := fltNewRecorder()
	w := fltNewWatcher(t, q.driver(rec), rec, waitOpts()...)
	if err := rec.await(ctx, "the Watcher listens", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvListen, rec.start, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}
	type ended struct {
		we  *jobwatch.WaitError
		err error
	}
	got := make(chan ended, 1)
	go func() {
		we, err := waitEnded(w, ids[0])
		got <- ended{we, err}
	}()
	if err := rec.await(ctx, "the job is read", func(evs []fltEvent) bool {
		return len(fltOf(evs, fltEvRead, rec.start, fltForever)) > 0
	}); err != nil {
		t.Fatal(err)
	}
	proxy.Close() // the listening connection drops; reconnects are refused
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	we := r.we
	if we.LastState != statemachine.Queued {
		t.Errorf("LastState = %s, want queued", we.LastState)
	}
	if we.DriverErr == nil {
		t.Errorf("WaitError = %v: no DriverErr while the listener cannot connect", we)
	}
}

func waitHeld(t *testing.T, bk fltBackendKind) {
	ctx := fltTestContext(t, 30*time.Second)
	q, _ := installed(t, ctx, bk)
	ids := fltMustEnqueue(t, ctx, q, 1)
	for _, ev := range []statemachine.Event{statemachine.Claim, statemachine.Hold} {
		if err := q.Apply(ctx, ev, ids...); err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
	}
	rec := fltNewRecorder()
	w := fltNewWatcher(t, q.driver(rec), rec, waitOpts()...)
	we := waitUntilDeadline(t, w, ids[0])
	if we.LastState != statemachine.Failed || we.DriverErr != nil {
		t.Errorf("WaitError = %+v, want last seen failed (held) and no DriverErr", we)
	}
}

func waitNotInstalled(t *testing.T, bk fltBackendKind) {
	ctx := fltTestContext(t, 30*time.Second)
	schema := pgtest.Schema(t)
	q := bk.open(t, fltQueueConfig{dsn: pgtest.DSN(), schema: schema, prefix: "typo_"})
	rec := fltNewRecorder()
	w := fltNewWatcher(t, q.driver(rec), rec, waitOpts()...)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := w.Wait(wctx, 1)
	var nie *jobwatch.NotInstalledError
	if !errors.Is(err, jobwatch.ErrNotInstalled) || !errors.As(err, &nie) || wctx.Err() != nil {
		t.Fatalf("Wait = %v; want ErrNotInstalled before the deadline", err)
	}
	if nie.Prefix != "typo_" || nie.Schema != schema {
		t.Errorf("NotInstalledError = %+v, want prefix typo_ in schema %s", nie, schema)
	}
	if msg := err.Error(); !strings.Contains(msg, `"typo_"`) || !strings.Contains(msg, schema) {
		t.Errorf("message %q does not name the prefix and schema looked for", msg)
	}
	if n := w.Stats().NotInstalled; n != 1 {
		t.Errorf("Stats.NotInstalled = %d, want 1", n)
	}
}

// fltCreateRole creates a login role of the test's own (no password: the
// test server trusts local connections) and returns its name, bare and
// quoted. It is dropped at cleanup, after every connection it has (the
// Watcher's and the pools, opened later, close first) and before the
// schema (dropped by pgtest, registered earlier).
func fltCreateRole(t *testing.T, ctx context.Context, admin *pgxv5.Conn, suffix string) (role, quoted string) {
	t.Helper()
	role = pgtest.UniqueName() + "_" + suffix
	quoted = pgxv5.Identifier{role}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE ROLE "+quoted+" LOGIN"); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, sql := range []string{"DROP OWNED BY " + quoted, "DROP ROLE " + quoted} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Errorf("cleanup: %s: %v", sql, err)
			}
		}
	})
	return role, quoted
}
