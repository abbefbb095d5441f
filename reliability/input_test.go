package reliability_test

// Bad input: every way to misuse the API gets a clear error matching the
// documented sentinel and changes nothing; and no error or log line ever
// holds a DSN's password.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// ---------------------------------------------------------------------------
// A capturing slog handler.

// stressLogs keeps every record at or above min, rendered as one line with
// all its attributes (errors by their Error text, as slog's handlers print
// them).
type stressLogs struct {
	min  slog.Level
	mu   sync.Mutex
	recs []string
}

func newStressLogs(min slog.Level) *stressLogs { return &stressLogs{min: min} }

func (l *stressLogs) logger() *slog.Logger { return slog.New(&stressHandler{l: l}) }

func (l *stressLogs) records() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

type stressHandler struct {
	l      *stressLogs
	attrs  []slog.Attr
	groups string
}

func (h *stressHandler) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= h.l.min }

func (h *stressHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		stressRenderAttr(&b, h.groups, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		stressRenderAttr(&b, h.groups, a)
		return true
	})
	h.l.mu.Lock()
	h.l.recs = append(h.l.recs, b.String())
	h.l.mu.Unlock()
	return nil
}

func stressRenderAttr(b *strings.Builder, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			stressRenderAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	b.WriteString(" " + prefix + a.Key + "=")
	if err, ok := v.Any().(error); ok && v.Kind() == slog.KindAny {
		b.WriteString(err.Error() + " (" + fmt.Sprintf("%+v", err) + ")")
		return
	}
	b.WriteString(fmt.Sprintf("%+v", v.Any()))
}

func (h *stressHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *stressHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.groups += name + "."
	return &n
}

func stressHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// TestBadInput.

// Where an input case runs.
const (
	onNothing  = iota // no backend needed
	onWatchers        // a Watcher on each of fake, pgx and pq
	onDB              // each database backend
)

// errBackendOption stands, in a case's want, for the ErrInvalidOption of
// the backend the case runs on (jwpgx's or jwpq's).
var errBackendOption = errors.New("the backend's ErrInvalidOption")

// inputFixture is what a case runs against.
type inputFixture struct {
	kind   string
	e      *stressEnv // nil for fake
	fb     *fake.Backend
	w      *jobwatch.Watcher // live
	closed *jobwatch.Watcher // already closed
	marker string            // in every rejected name

	queued, picked jobwatch.JobID
	dedupeKey      string // held by the queued job
}

type inputCase struct {
	name    string
	on      int
	run     func(t *testing.T, f *inputFixture) error
	want    []error // each must match; nil: the call must succeed
	mayRead bool    // the call may cause a status read (it had a valid wait)
	only    string  // run on this backend kind only
}

// inputSnapshot is what a rejected call must leave unchanged.
type inputSnapshot struct {
	pending, waiters int
	reads            uint64
	queueRows        int64
	logRows, logMax  int64
	relations        int64 // pg_class rows in the schema
	marked           int64 // catalog objects, anywhere, whose name holds the marker
	states           string
}

func (f *inputFixture) snapshot(t *testing.T) inputSnapshot {
	t.Helper()
	var s inputSnapshot
	if f.w != nil {
		st := f.w.Stats()
		s.pending, s.waiters, s.reads = st.Pending, st.Waiters, st.Reads.Total()
	}
	if f.e == nil {
		return s
	}
	e := f.e
	err := e.admin.QueryRow(e.ctx, `SELECT
		(SELECT count(*) FROM `+e.b.QueueTable()+`),
		(SELECT count(*) FROM `+e.b.LogTable()+`),
		(SELECT coalesce(max(id), 0) FROM `+e.b.LogTable()+`),
		(SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1),
		(SELECT count(*) FROM pg_catalog.pg_namespace WHERE strpos(nspname, $2) > 0)
		+ (SELECT count(*) FROM pg_catalog.pg_class WHERE strpos(relname, $2) > 0)
		+ (SELECT count(*) FROM pg_catalog.pg_type WHERE strpos(typname, $2) > 0)
		+ (SELECT count(*) FROM pg_catalog.pg_proc WHERE strpos(proname, $2) > 0)`,
		e.schema, strings.ToLower(f.marker)).Scan(&s.queueRows, &s.logRows, &s.logMax, &s.relations, &s.marked)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	tr := e.truth([]jobwatch.JobID{f.queued, f.picked})
	s.states = fmt.Sprint(tr[f.queued], tr[f.picked])
	return s
}

// TestBadInput is one table of misuse: a nil driver, every option with a
// negative or meaningless value, bad ids and empty lists for every wait
// method, hostile prefixes and schemas for both backends' New (quotes,
// semicolons, NUL, spaces, control and invisible characters, invalid
// UTF-8, too many bytes), a closed Watcher, illegal or invalid events, bad
// jobs and claims. Each gets an error matching the documented sentinel and
// changes nothing: no status read, no pending wait, no row, no object (a
// rejected name, which carries a unique marker, names nothing in the
// catalog). The names the rules accept (letters and digits of any script,
// '_', '-', mixed case, the longest allowed) install and deliver
// notifications end to end.
func TestBadInput(t *testing.T) {
	marker := "JwBad" + stressHex(4)
	bad := func(s string) string { return marker + s }
	long := func(n int) string { return marker + strings.Repeat("x", n-len(marker)) }
	ids := func(v ...jobwatch.JobID) []jobwatch.JobID { return v }
	var cases []inputCase
	add := func(c inputCase) { cases = append(cases, c) }

	// jobwatch.New and its options.
	newW := func(d jobwatch.Driver, opts ...jobwatch.Option) error {
		w, err := jobwatch.New(d, opts...)
		if w != nil {
			_ = w.Close()
		}
		if err != nil && w != nil {
			return fmt.Errorf("New returned a Watcher along with its error %w", err)
		}
		return err
	}
	add(inputCase{name: "New(nil)", on: onNothing, want: []error{jobwatch.ErrInvalidOption},
		run: func(t *testing.T, f *inputFixture) error { return newW(nil) }})
	add(inputCase{name: "New(nil, valid options)", on: onNothing, want: []error{jobwatch.ErrInvalidOption},
		run: func(t *testing.T, f *inputFixture) error { return newW(nil, jobwatch.WithDebounce(time.Second)) }})
	for _, o := range []struct {
		name string
		opt  jobwatch.Option
		ok   bool
	}{
		{"nil option", nil, false},
		{"WithRefreshInterval(0)", jobwatch.WithRefreshInterval(0), false},
		{"WithRefreshInterval(-1ns)", jobwatch.WithRefreshInterval(-1), false},
		{"WithRefreshInterval(MinInt64)", jobwatch.WithRefreshInterval(math.MinInt64), false},
		{"WithDebounce(-1ns)", jobwatch.WithDebounce(-1), false},
		{"WithDebounce(-1h)", jobwatch.WithDebounce(-time.Hour), false},
		{"WithNotFoundGrace(-1ns)", jobwatch.WithNotFoundGrace(-1), false},
		{"WithLogger(nil)", jobwatch.WithLogger(nil), false},
		{"WithBackoff(0, 1s)", jobwatch.WithBackoff(0, time.Second), false},
		{"WithBackoff(-1s, 1s)", jobwatch.WithBackoff(-time.Second, time.Second), false},
		{"WithBackoff(1s, 0)", jobwatch.WithBackoff(time.Second, 0), false},
		{"WithBackoff(1s, -1s)", jobwatch.WithBackoff(time.Second, -time.Second), false},
		{"WithBackoff(2s, 1s) (min > max)", jobwatch.WithBackoff(2*time.Second, time.Second), false},
		{"WithBatchSize(0)", jobwatch.WithBatchSize(0), false},
		{"WithBatchSize(-1)", jobwatch.WithBatchSize(-1), false},
		{"WithBatchSize(MinInt)", jobwatch.WithBatchSize(math.MinInt), false},
		{"WithCloseTimeout(0)", jobwatch.WithCloseTimeout(0), false},
		{"WithCloseTimeout(-1s)", jobwatch.WithCloseTimeout(-time.Second), false},
		// The boundaries the documentation allows.
		{"WithDebounce(0)", jobwatch.WithDebounce(0), true},
		{"WithNotFoundGrace(0)", jobwatch.WithNotFoundGrace(0), true},
		{"WithBackoff(1ns, 1ns)", jobwatch.WithBackoff(1, 1), true},
		{"WithBatchSize(1)", jobwatch.WithBatchSize(1), true},
		{"WithRefreshInterval(1ns)", jobwatch.WithRefreshInterval(1), true},
		{"WithCloseTimeout(1ns)", jobwatch.WithCloseTimeout(1), true},
	} {
		c := inputCase{name: "New with " + o.name, on: onNothing,
			run: func(t *testing.T, f *inputFixture) error {
				fb := fake.New()
				defer fb.Close()
				return newW(fb, jobwatch.WithRefreshInterval(time.Hour), o.opt)
			}}
		if !o.ok {
			c.want = []error{jobwatch.ErrInvalidOption}
		}
		add(c)
	}

	// Bad ids and empty lists, for every wait method.
	for _, c := range []struct {
		name string
		call func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error
	}{
		{"Wait(0)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.Wait(ctx, 0)
			return err
		}},
		{"Wait(-1)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.Wait(ctx, -1)
			return err
		}},
		{"Wait(MinInt64)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.Wait(ctx, math.MinInt64)
			return err
		}},
		{"WaitAll(nil)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAll(ctx, nil)
			return err
		}},
		{"WaitAll(empty)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAll(ctx, ids())
			return err
		}},
		{"WaitAll(valid, 0)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAll(ctx, ids(f.queued, 0))
			return err
		}},
		{"WaitAll(-7, valid)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAll(ctx, ids(-7, f.queued))
			return err
		}},
		{"WaitAny(nil)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAny(ctx, nil)
			return err
		}},
		{"WaitAny(0, valid)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAny(ctx, ids(0, f.queued))
			return err
		}},
		{"WaitEach(nil)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			return eachErr(w.WaitEach(ctx, nil))
		}},
		{"WaitEach(valid, -1)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			return eachErr(w.WaitEach(ctx, ids(f.queued, -1)))
		}},
		{"WaitEach(empty)", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			return eachErr(w.WaitEach(ctx, ids()))
		}},
	} {
		add(inputCase{name: c.name, on: onWatchers, want: []error{jobwatch.ErrInvalidID},
			run: func(t *testing.T, f *inputFixture) error { return c.call(pgtest.Context(t), f.w, f) }})
		add(inputCase{name: c.name + " on a closed Watcher", on: onWatchers, want: []error{jobwatch.ErrInvalidID},
			run: func(t *testing.T, f *inputFixture) error { return c.call(pgtest.Context(t), f.closed, f) }})
	}
	// A closed Watcher, and a dead context.
	for _, c := range []struct {
		name string
		call func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error
	}{
		{"Wait", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.Wait(ctx, f.queued)
			return err
		}},
		{"WaitAll", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAll(ctx, ids(f.queued, f.picked, f.queued))
			return err
		}},
		{"WaitAny", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			_, err := w.WaitAny(ctx, ids(f.queued, f.picked))
			return err
		}},
		{"WaitEach", func(ctx context.Context, w *jobwatch.Watcher, f *inputFixture) error {
			return eachErr(w.WaitEach(ctx, ids(f.queued, f.picked)))
		}},
	} {
		add(inputCase{name: c.name + " on a closed Watcher", on: onWatchers, want: []error{jobwatch.ErrClosed},
			run: func(t *testing.T, f *inputFixture) error { return c.call(pgtest.Context(t), f.closed, f) }})
		add(inputCase{name: c.name + " with a cancelled ctx", on: onWatchers, want: []error{context.Canceled}, mayRead: true,
			run: func(t *testing.T, f *inputFixture) error {
				ctx, cancel := context.WithCancel(pgtest.Context(t))
				cancel()
				return c.call(ctx, f.w, f)
			}})
	}
	add(inputCase{name: "Close twice", on: onWatchers,
		run: func(t *testing.T, f *inputFixture) error { return f.closed.Close() }})

	// Both backends' New.
	add(inputCase{name: "backend New(nil handle)", on: onDB, want: []error{errBackendOption},
		run: func(t *testing.T, f *inputFixture) error {
			h := f.e.h
			h.pool, h.db = nil, nil
			_, err := newStressBackend(h, stressOpts{})
			return err
		}})
	add(inputCase{name: "backend New with a nil option", on: onDB, want: []error{errBackendOption},
		run: func(t *testing.T, f *inputFixture) error {
			_, err := newStressBackend(f.e.h, stressOpts{nilOption: true})
			return err
		}})
	add(inputCase{name: "backend WithHealthCheck(-1ns)", on: onDB, want: []error{errBackendOption},
		run: func(t *testing.T, f *inputFixture) error {
			d := time.Duration(-1)
			_, err := newStressBackend(f.e.h, stressOpts{prefix: f.e.prefix, schema: f.e.schema, health: &d})
			return err
		}})
	// An empty DSN is not bad input: lib/pq, and so backends/pq, take it
	// as all PG* defaults.
	for _, dsn := range []string{"postgres://u@127.0.0.1:notaport/test", "host=127.0.0.1 port='5432", "postgres://%zz"} {
		add(inputCase{name: fmt.Sprintf("New with DSN %q", dsn), on: onDB, only: "pq", want: []error{errBackendOption},
			run: func(t *testing.T, f *inputFixture) error {
				h := f.e.h
				h.dsn = dsn
				_, err := newStressBackend(h, stressOpts{prefix: f.e.prefix, schema: f.e.schema})
				return err
			}})
	}
	for _, name := range []struct{ label, s string }{
		{"double quote", bad(`"q`)}, {"single quote", bad(`'q`)}, {"semicolon", bad(`;DROP TABLE x`)},
		{"space", bad(` q`)}, {"NUL", bad("\x00q")}, {"tab", bad("\tq")}, {"newline", bad("\nq")},
		{"dot", bad(".q")}, {"dollar", bad("$q")}, {"backslash", bad(`\q`)}, {"comment", bad("/*q*/")},
		{"invalid UTF-8", bad("\xffq")}, {"zero-width space", bad("\u200bq")}, {"emoji", bad("\U0001F600")},
		{"right-to-left override", bad("\u202eq")},
	} {
		add(inputCase{name: "prefix with a " + name.label, on: onDB, want: []error{jwpgx.ErrInvalidIdentifier},
			run: func(t *testing.T, f *inputFixture) error {
				_, err := newStressBackend(f.e.h, stressOpts{prefix: name.s, schema: f.e.schema})
				return err
			}})
		add(inputCase{name: "schema with a " + name.label, on: onDB, want: []error{jwpgx.ErrInvalidIdentifier},
			run: func(t *testing.T, f *inputFixture) error {
				_, err := newStressBackend(f.e.h, stressOpts{prefix: f.e.prefix, schema: name.s})
				return err
			}})
	}
	for _, c := range []struct {
		label          string
		prefix, schema string
	}{
		{"prefix of 32 bytes", long(32), ""},
		{"prefix of 16 two-byte letters (32 bytes)", strings.Repeat("é", 16), ""},
		{"prefix of 64 bytes", long(64), ""},
		{"schema of 64 bytes", "", long(64)},
		{"schema of 22 three-byte letters (66 bytes)", "", strings.Repeat("日", 22)},
	} {
		add(inputCase{name: c.label, on: onDB, want: []error{jwpgx.ErrInvalidIdentifier},
			run: func(t *testing.T, f *inputFixture) error {
				p, s := c.prefix, c.schema
				if p == "" {
					p = f.e.prefix
				}
				if s == "" {
					s = f.e.schema
				}
				_, err := newStressBackend(f.e.h, stressOpts{prefix: p, schema: s})
				return err
			}})
	}

	// The job lifecycle.
	apply := func(ev statemachine.Event, pick func(f *inputFixture) []jobwatch.JobID) func(t *testing.T, f *inputFixture) error {
		return func(t *testing.T, f *inputFixture) error { return f.e.b.Apply(pgtest.Context(t), ev, pick(f)...) }
	}
	the := func(v ...any) func(f *inputFixture) []jobwatch.JobID {
		return func(f *inputFixture) []jobwatch.JobID {
			var out []jobwatch.JobID
			for _, x := range v {
				switch x := x.(type) {
				case string:
					out = append(out, map[string]jobwatch.JobID{"queued": f.queued, "picked": f.picked}[x])
				case int:
					out = append(out, jobwatch.JobID(x))
				}
			}
			return out
		}
	}
	for _, c := range []struct {
		name string
		ev   statemachine.Event
		ids  func(f *inputFixture) []jobwatch.JobID
		want []error
	}{
		{"Apply(enqueue) to a queued job", statemachine.Enqueue, the("queued"), []error{statemachine.ErrIllegalTransition}},
		{"Apply(enqueue) to a picked job", statemachine.Enqueue, the("picked"), []error{statemachine.ErrIllegalTransition}},
		{"Apply(Event(0))", 0, the("picked"), []error{statemachine.ErrUnknownEvent, statemachine.ErrIllegalTransition}},
		{"Apply(Event(200))", 200, the("queued"), []error{statemachine.ErrUnknownEvent, statemachine.ErrIllegalTransition}},
		{"Apply(complete) with no ids", statemachine.Complete, the(), []error{jobwatch.ErrInvalidID}},
		{"Apply(complete, 0)", statemachine.Complete, the(0), []error{jobwatch.ErrInvalidID}},
		{"Apply(cancel, valid, -3)", statemachine.Cancel, the("queued", -3), []error{jobwatch.ErrInvalidID}},
		{"Apply(complete) to a queued job", statemachine.Complete, the("queued"), []error{statemachine.ErrIllegalTransition}},
		{"Apply(delete) to a picked job", statemachine.Delete, the("picked"), []error{statemachine.ErrIllegalTransition}},
		{"Apply(complete, picked, queued): all or nothing", statemachine.Complete, the("picked", "queued"), []error{statemachine.ErrIllegalTransition}},
		{"Apply(complete) to a job that never existed", statemachine.Complete, the(1 << 60), []error{jwpgx.ErrUnknownJob, statemachine.ErrIllegalTransition}},
	} {
		add(inputCase{name: c.name, on: onDB, want: c.want, run: apply(c.ev, c.ids)})
	}
	enqueue := func(jobs ...queue.NewJob) func(t *testing.T, f *inputFixture) error {
		return func(t *testing.T, f *inputFixture) error {
			got, err := f.e.b.Enqueue(pgtest.Context(t), jobs...)
			if err == nil || got != nil {
				return fmt.Errorf("Enqueue = %v, %w", got, err)
			}
			return err
		}
	}
	for _, c := range []struct {
		name string
		jobs []queue.NewJob
		want error
	}{
		{"Enqueue() of no jobs", nil, jwpgx.ErrInvalidJob},
		{"Enqueue with an empty entrypoint", []queue.NewJob{{}}, jwpgx.ErrInvalidJob},
		{"Enqueue with a negative delay", []queue.NewJob{{Entrypoint: "x", ExecuteAfter: -time.Second}}, jwpgx.ErrInvalidJob},
		{"Enqueue with delay MinInt64", []queue.NewJob{{Entrypoint: "x", ExecuteAfter: math.MinInt64}}, jwpgx.ErrInvalidJob},
		{"Enqueue with NUL in the entrypoint", []queue.NewJob{{Entrypoint: "a\x00b"}}, jwpgx.ErrInvalidJob},
		{"Enqueue with invalid UTF-8 in the entrypoint", []queue.NewJob{{Entrypoint: "\xff"}}, jwpgx.ErrInvalidJob},
		{"Enqueue with NUL in the dedupe key", []queue.NewJob{{Entrypoint: "x", DedupeKey: "k\x00"}}, jwpgx.ErrInvalidJob},
		{"Enqueue with a priority beyond int4", []queue.NewJob{{Entrypoint: "x", Priority: math.MaxInt32 + 1}}, jwpgx.ErrInvalidJob},
		{"Enqueue with headers that are not JSON", []queue.NewJob{{Entrypoint: "x", Headers: map[string]any{"f": func() {}}}}, jwpgx.ErrInvalidJob},
		{"Enqueue of a valid job then an invalid one", []queue.NewJob{{Entrypoint: "ok"}, {Entrypoint: ""}}, jwpgx.ErrInvalidJob},
		{"Enqueue repeating a dedupe key", []queue.NewJob{{Entrypoint: "x", DedupeKey: "twice"}, {Entrypoint: "x", DedupeKey: "twice"}}, jwpgx.ErrDuplicate},
	} {
		add(inputCase{name: c.name, on: onDB, want: []error{c.want}, run: enqueue(c.jobs...)})
	}
	add(inputCase{name: "Enqueue with a dedupe key already held", on: onDB, want: []error{jwpgx.ErrDuplicate},
		run: func(t *testing.T, f *inputFixture) error {
			return enqueue(queue.NewJob{Entrypoint: "ok"}, queue.NewJob{Entrypoint: "x", DedupeKey: f.dedupeKey})(t, f)
		}})
	for _, c := range []struct {
		name string
		req  queue.ClaimRequest
	}{
		{"Claim with no entrypoints", queue.ClaimRequest{Limit: 1}},
		{"Claim with an empty entrypoint", queue.ClaimRequest{Entrypoints: []string{""}, Limit: 1}},
		{"Claim with NUL in an entrypoint", queue.ClaimRequest{Entrypoints: []string{"in\x00put"}, Limit: 1}},
		{"Claim with limit 0", queue.ClaimRequest{Entrypoints: []string{"input"}}},
		{"Claim with limit -1", queue.ClaimRequest{Entrypoints: []string{"input"}, Limit: -1}},
		{"Claim with limit 100,001", queue.ClaimRequest{Entrypoints: []string{"input"}, Limit: 100001}},
	} {
		add(inputCase{name: c.name, on: onDB, want: []error{jwpgx.ErrInvalidJob},
			run: func(t *testing.T, f *inputFixture) error {
				got, err := f.e.b.Claim(pgtest.Context(t), c.req)
				if got != nil {
					return fmt.Errorf("Claim returned %d jobs (err %w)", len(got), err)
				}
				return err
			}})
	}
	for _, c := range []struct {
		name string
		tb   queue.Traceback
		want error
	}{
		{"Exception with a traceback that is not JSON", queue.Traceback{Raw: json.RawMessage(`{"bad"`)}, jwpgx.ErrInvalidJob},
		{"Exception with a traceback that cannot be encoded", queue.Traceback{AdditionalContext: map[string]any{"c": make(chan int)}}, jwpgx.ErrInvalidJob},
	} {
		add(inputCase{name: c.name, on: onDB, want: []error{c.want},
			run: func(t *testing.T, f *inputFixture) error { return f.e.b.Exception(pgtest.Context(t), f.picked, c.tb) }})
	}
	add(inputCase{name: "Exception of a queued job", on: onDB, want: []error{statemachine.ErrIllegalTransition},
		run: func(t *testing.T, f *inputFixture) error {
			return f.e.b.Exception(pgtest.Context(t), f.queued, queue.Traceback{ExceptionMessage: "tb"})
		}})
	add(inputCase{name: "FetchStatuses of ids <= 0 finds nothing", on: onDB,
		run: func(t *testing.T, f *inputFixture) error {
			sts, err := f.e.b.FetchStatuses(pgtest.Context(t), ids(0, -1, math.MinInt64))
			if err == nil && len(sts) != 0 {
				return fmt.Errorf("FetchStatuses of ids <= 0 returned %v", sts)
			}
			return err
		}})

	// Run the table: once, or on each fixture.
	fixtures := map[int][]*inputFixture{onNothing: {{kind: "none", marker: marker}}}
	fb := fake.New()
	t.Cleanup(func() { fb.Close() })
	fids, err := fb.EnqueueN(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.Apply(context.Background(), statemachine.Claim, fids[1]); err != nil {
		t.Fatal(err)
	}
	ff := &inputFixture{kind: "fake", fb: fb, marker: marker, queued: fids[0], picked: fids[1]}
	fixtures[onWatchers] = append(fixtures[onWatchers], ff)
	for _, kind := range stressKinds {
		e := newStressEnv(t, kind, stressEnvOpts{maxConns: 4})
		key := "held-" + stressHex(4)
		got, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "input", DedupeKey: key}, queue.NewJob{Entrypoint: "input"})
		if err != nil {
			t.Fatal(err)
		}
		e.apply(statemachine.Claim, got[1])
		f := &inputFixture{kind: kind, e: e, marker: marker, queued: got[0], picked: got[1], dedupeKey: key}
		fixtures[onWatchers] = append(fixtures[onWatchers], f)
		fixtures[onDB] = append(fixtures[onDB], f)
	}
	for _, f := range fixtures[onWatchers] {
		var d jobwatch.Driver = f.fb
		if f.e != nil {
			d = f.e.b
		}
		f.w = newStressWatcher(t, d, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(time.Millisecond))
		f.closed = newStressWatcher(t, d)
		if err := f.closed.Close(); err != nil {
			t.Fatalf("%s: Close: %v", f.kind, err)
		}
	}

	for _, c := range cases {
		for _, f := range fixtures[c.on] {
			if c.only != "" && c.only != f.kind {
				continue
			}
			name := c.name
			if f.kind != "none" {
				name = f.kind + "/" + name
			}
			t.Run(name, func(t *testing.T) {
				before := f.snapshot(t)
				err := c.run(t, f)
				if c.want == nil {
					if err != nil {
						t.Fatalf("%s: %v; want success", c.name, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("%s succeeded; want an error matching %v", c.name, c.want)
				}
				for _, want := range c.want {
					if want == errBackendOption {
						want = stressInvalidOption(f.kind)
					}
					if !errors.Is(err, want) {
						t.Errorf("%s: error %q does not match %q", c.name, err, want)
					}
				}
				if strings.TrimSpace(err.Error()) == "" {
					t.Errorf("%s: empty error message", c.name)
				}
				after := f.snapshot(t)
				if c.mayRead {
					after.reads = before.reads
				}
				if after != before {
					t.Errorf("%s changed something:\nbefore %+v\nafter  %+v", c.name, before, after)
				}
			})
		}
	}

	// What the identifier rules accept works end to end: it installs, and
	// a job resolves through a notification on the derived channel.
	for _, kind := range stressKinds {
		f := fixtures[onDB][0]
		if f.kind != kind {
			f = fixtures[onDB][1]
		}
		for _, c := range []struct {
			label, prefix, schema string
		}{
			{"lower- and upper-case letters of other scripts", "jöb_ÜÑ_", ""},
			{"CJK letters", "日本語_", ""},
			{"mixed case", "JwMixed_Case_", ""},
			{"hyphens", "jw-dash-", ""},
			{"Arabic-Indic digits first", "٣٤_", ""},
			{"a prefix of 31 bytes (the longest)", strings.Repeat("p", 31), ""},
			{"a schema of 63 bytes (the longest)", "jw" + stressHex(3) + "_", "jwok_" + stressHex(29)},
			{"a schema with letters of other scripts and case", "jw" + stressHex(3) + "_", "Schéma-Ü_" + stressHex(4)},
		} {
			t.Run(kind+"/accepted: "+c.label, func(t *testing.T) {
				stressAcceptedName(t, f, c.prefix, c.schema)
			})
		}
	}
}

// stressAcceptedName installs a queue under prefix (in the fixture's schema
// unless schema is set, then in that new schema) and proves the channel
// works: after the Watcher's first read of a queued job, only a
// notification can resolve it (the poll is an hour away).
func stressAcceptedName(t *testing.T, f *inputFixture, prefix, schema string) {
	e := f.e
	ctx := pgtest.Context(t)
	if schema == "" {
		schema = e.schema
	} else {
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := e.admin.Exec(cctx, "DROP SCHEMA IF EXISTS "+stressQuoteIdent(schema)+" CASCADE"); err != nil {
				t.Errorf("drop schema %q: %v", schema, err)
			}
		})
	}
	b, err := newStressBackend(e.h, stressOpts{prefix: prefix, schema: schema})
	if err != nil {
		t.Fatalf("New(prefix %q, schema %q): %v", prefix, schema, err)
	}
	if ch := b.Channel(); ch != prefix+"ch_pgqueuer" {
		t.Errorf("channel %q, want %q", ch, prefix+"ch_pgqueuer")
	}
	if res, err := b.Install(ctx); err != nil || !res.Created {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	if schema == e.schema {
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Uninstall(cctx); err != nil {
				t.Errorf("Uninstall: %v", err)
			}
		})
	}
	var n int64
	if err := e.admin.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relname = $2",
		schema, prefix+"pgqueuer").Scan(&n); err != nil || n != 1 {
		t.Fatalf("queue table %q.%q: found %d, %v", schema, prefix+"pgqueuer", n, err)
	}
	w := newStressWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(time.Millisecond))
	ids, err := b.Enqueue(ctx, queue.NewJob{Entrypoint: "accepted"})
	if err != nil {
		t.Fatal(err)
	}
	done := stressGoWait(ctx, w, ids[0])
	stressUntil(t, 10*time.Second, "the first read and the subscription", func() bool {
		st := w.Stats()
		return st.Listening && st.Reads.Total() > 0 && st.Pending == 1
	})
	for _, ev := range []statemachine.Event{statemachine.Claim, statemachine.Complete} {
		if err := b.Apply(ctx, ev, ids[0]); err != nil {
			t.Fatal(err)
		}
	}
	r := stressRecv(t, done, 10*time.Second, "Wait through the channel")
	if r.err != nil || r.state != statemachine.Successful {
		t.Fatalf("Wait = %v, %v", r.state, r.err)
	}
	// The names work for LISTEN/NOTIFY too: the completion's notification
	// (sent after the subscription was live) arrives and is understood.
	// Which read resolved the wait depends on timing: the subscription's
	// first read may run after the completion.
	stressUntil(t, 10*time.Second, "the completion's notification", func() bool {
		return w.Stats().Notifications >= 1
	})
	if st := w.Stats(); st.IgnoredNotifications != 0 {
		t.Errorf("%d notifications ignored; want every one understood", st.IgnoredNotifications)
	}
}

// eachErr drains a WaitEach iterator and returns the first error it yields.
func eachErr(seq func(func(jobwatch.Status, error) bool)) error {
	var first error
	n := 0
	for _, err := range seq {
		n++
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil && n != 1 {
		return fmt.Errorf("WaitEach yielded %d pairs along with %w", n, first)
	}
	return first
}

// ---------------------------------------------------------------------------
// TestPasswordNeverLeaks.

// stressSecretDSN is a DSN carrying a password, and the strings that must
// never appear in an error or a log line.
type stressSecretDSN struct {
	label     string
	dsn       string
	forbidden []string
	reachable bool // the server is reached (with a password it does not check)
}

// TestPasswordNeverLeaks runs every backend operation, the Watcher and the
// command with DSNs that carry a password (URL userinfo, URL query
// parameter, key=value, with special characters), pointing at a port where
// nothing listens and at the real server: as a role it refuses (CONNECTION
// LIMIT 0), and as a role it accepts but that may read nothing (so every
// query fails with a permission error). The test server trusts 127.0.0.1,
// so it never checks a password: a wrong password is sent, and ignored.
// Every error string (Error and %+v), every slog record (debug and up, from
// both backends and the Watcher) and the command's output must be free of
// the password and of each random half of it.
func TestPasswordNeverLeaks(t *testing.T) {
	admin, _ := openStressAdmin(t)
	ctx := pgtest.Context(t)
	e := newStressEnv(t, "pgx", stressEnvOpts{maxConns: 2}) // the installation the roles point at
	refused := "jwt_refused_" + stressHex(4)
	denied := "jwt_denied_" + stressHex(4)
	for _, q := range []string{
		"CREATE ROLE " + refused + " LOGIN CONNECTION LIMIT 0 PASSWORD 'real-" + stressHex(8) + "'",
		"CREATE ROLE " + denied + " LOGIN PASSWORD 'real-" + stressHex(8) + "'",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.Exec(cctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ($1, $2)", refused, denied)
		for _, r := range []string{refused, denied} {
			if _, err := admin.Exec(cctx, "DROP ROLE IF EXISTS "+r); err != nil {
				t.Errorf("DROP ROLE %s: %v", r, err)
			}
		}
	})

	var dsns []stressSecretDSN
	secret := func(special bool) (string, []string) {
		a, b := stressHex(6), stressHex(6)
		pw := "Plain" + a + b
		if special {
			pw = "S" + a + ` p@ss:w/rd?&=#%25+'"\;é€ ` + b + "!"
		}
		forbidden := []string{pw, a, b, url.QueryEscape(pw), url.PathEscape(pw)}
		return pw, forbidden
	}
	kvEscape := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace
	const (
		inURL = iota
		inKeyValue
		inQuery
	)
	for _, target := range []struct {
		label, user string
		port        int
		reachable   bool
		forms       []int
		special     []bool
	}{
		{"unreachable port", "postgres", 1, false, []int{inURL, inKeyValue, inQuery}, []bool{true, true, true}},
		{"role refused by the server", refused, 5432, false, []int{inURL, inKeyValue}, []bool{true, false}},
		{"role without privileges", denied, 5432, true, []int{inURL, inKeyValue, inQuery}, []bool{false, true, true}},
	} {
		for i, form := range target.forms {
			pw, forbidden := secret(target.special[i])
			kind := "plain"
			if target.special[i] {
				kind = "special characters"
			}
			host := fmt.Sprintf("127.0.0.1:%d", target.port)
			d := stressSecretDSN{forbidden: forbidden, reachable: target.reachable}
			switch form {
			case inURL:
				u := url.URL{Scheme: "postgres", User: url.UserPassword(target.user, pw), Host: host, Path: "/test",
					RawQuery: "sslmode=disable&connect_timeout=2"}
				d.label, d.dsn = target.label+", URL, "+kind, u.String()
			case inKeyValue:
				d.label = target.label + ", key=value, " + kind
				d.dsn = fmt.Sprintf("host=127.0.0.1 port=%d user=%s password='%s' dbname=test sslmode=disable connect_timeout=2",
					target.port, target.user, kvEscape(pw))
			case inQuery:
				d.label = target.label + ", URL query parameter, " + kind
				d.dsn = fmt.Sprintf("postgres://%s@%s/test?sslmode=disable&connect_timeout=2&password=%s", target.user, host, url.QueryEscape(pw))
			}
			dsns = append(dsns, d)
		}
	}
	// DSNs that do not even parse.
	pw, forbidden := secret(true)
	unparsable := []stressSecretDSN{
		{"URL with a bad port", "postgres://u:" + url.PathEscape(pw) + "@127.0.0.1:notaport/test", forbidden, false},
		{"key=value with an unterminated quote", "host=127.0.0.1 password='" + kvEscape(pw), forbidden, false},
	}

	leaks := func(t *testing.T, d stressSecretDSN, where string, texts []string) {
		t.Helper()
		for _, s := range texts {
			for _, f := range d.forbidden {
				if strings.Contains(s, f) {
					t.Errorf("%s: the password (or part of it, %q) leaked: %s", where, f, s)
					break
				}
			}
		}
	}

	for _, kind := range stressKinds {
		for _, d := range dsns {
			t.Run(kind+"/"+d.label, func(t *testing.T) {
				t.Parallel()
				errs, logs := stressExercise(t, kind, d.dsn, e.prefix, e.schema)
				if len(errs) == 0 || len(logs) == 0 {
					t.Fatalf("nothing to check: %d errors, %d log records", len(errs), len(logs))
				}
				leaks(t, d, "error", errs)
				leaks(t, d, "log record", logs)
				t.Logf("%d errors and %d log records checked, e.g. %q", len(errs), len(logs), errs[0])
			})
		}
	}
	// Only pq's New takes a DSN (pgx's takes a pool: the command below
	// covers pgx's parser).
	for _, d := range unparsable {
		t.Run("pq/New with a "+d.label, func(t *testing.T) {
			db, err := sqlx.Open("postgres", "")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = newStressBackend(stressHandles{kind: "pq", db: db, dsn: d.dsn}, stressOpts{})
			if !errors.Is(err, stressInvalidOption("pq")) {
				t.Fatalf("pq New with an unparsable DSN: %v", err)
			}
			leaks(t, d, "error", []string{err.Error(), fmt.Sprintf("%+v", err)})
		})
	}

	// The command.
	t.Run("command", func(t *testing.T) {
		bin := stressBuildCommand(t)
		for _, d := range append(dsns, unparsable...) {
			for _, driver := range stressKinds {
				runs := [][]string{{"status", "--driver", driver, "--dsn", d.dsn, "--schema", e.schema, "--prefix", e.prefix, "1"}}
				if d.reachable {
					runs = append(runs, []string{"wait", "-v", "--timeout", "500ms", "--refresh", "100ms", "--driver", driver,
						"--dsn", d.dsn, "--schema", e.schema, "--prefix", e.prefix, "1"})
				}
				for _, args := range runs {
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					cmd := exec.CommandContext(cctx, bin, args...)
					cmd.Env = stressEnvWithout(os.Environ(), "DATABASE_URL=", "PGQUEUER_PREFIX=", "PGPASSWORD=", "PGPASSFILE=")
					var stdout, stderr bytes.Buffer
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					err := cmd.Run()
					cancel()
					var exit *exec.ExitError
					if err == nil || !errors.As(err, &exit) {
						t.Errorf("jobwatch %s --driver %s (%s): %v; want a failure exit", args[0], driver, d.label, err)
					}
					where := fmt.Sprintf("jobwatch %s --driver %s (%s)", args[0], driver, d.label)
					if stderr.Len() == 0 {
						t.Errorf("%s: nothing on stderr", where)
					}
					leaks(t, d, where+" stderr", []string{stderr.String()})
					leaks(t, d, where+" stdout", []string{stdout.String()})
				}
			}
		}
	})
}

// stressExercise runs every operation of a backend of kind on dsn (which
// cannot succeed), and a Watcher over it, and returns every error text and
// every log record.
func stressExercise(t *testing.T, kind, dsn, prefix, schema string) (errs, logs []string) {
	ctx := pgtest.Context(t)
	rec := newStressLogs(slog.LevelDebug)
	collect := func(what string, err error) {
		if err != nil {
			errs = append(errs, what+": "+err.Error(), what+": "+fmt.Sprintf("%+v", err))
		}
	}
	h := stressHandles{kind: kind, dsn: dsn}
	switch kind {
	case "pgx":
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("pgxpool.ParseConfig: %v", err)
		}
		cfg.MaxConns = 3
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("pgxpool: %v", err)
		}
		defer pool.Close()
		h.pool = pool
	case "pq":
		db, err := sqlx.Open("postgres", dsn)
		if err != nil {
			t.Fatalf("sqlx.Open: %v", err)
		}
		defer db.Close()
		db.SetMaxOpenConns(3)
		h.db = db
	}
	health := 100 * time.Millisecond
	b, err := newStressBackend(h, stressOpts{prefix: prefix, schema: schema, logger: rec.logger(), health: &health})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = b.Install(ctx)
	collect("Install", err)
	_, err = b.Installed(ctx)
	collect("Installed", err)
	_, err = b.Enqueue(ctx, queue.NewJob{Entrypoint: "leak"})
	collect("Enqueue", err)
	_, err = b.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"leak"}, Limit: 1})
	collect("Claim", err)
	collect("Apply", b.Apply(ctx, statemachine.Complete, 1))
	collect("Exception", b.Exception(ctx, 1, queue.Traceback{ExceptionMessage: "traceback"}))
	_, err = b.FetchStatuses(ctx, []jobwatch.JobID{1})
	collect("FetchStatuses", err)
	collect("NotifyRaw", b.NotifyRaw(ctx, `{"type":"x"}`))
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sub, err := b.Listen(lctx)
	cancel()
	collect("Listen", err)
	if err == nil {
		nctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond) // two health checks
		_, err := sub.Next(nctx)
		cancel()
		collect("Next", err)
		collect("Subscription.Close", sub.Close())
	}
	w, err := jobwatch.New(b, jobwatch.WithLogger(rec.logger()), jobwatch.WithBackoff(5*time.Millisecond, 20*time.Millisecond),
		jobwatch.WithDebounce(0), jobwatch.WithRefreshInterval(50*time.Millisecond), jobwatch.WithNotFoundGrace(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := w.Wait(wctx, 1)
		waited <- err
	}()
	// Let it fail for a while: several failed reads, and failed listens
	// unless it could listen.
	stressUntil(t, 20*time.Second, "the Watcher failing reads (and listens)", func() bool {
		st := w.Stats()
		return st.ReadErrors >= 3 && (st.ListenErrors >= 2 || st.Listening)
	})
	cancel()
	collect("Wait", stressRecv(t, waited, 10*time.Second, "Wait"))
	st := w.Stats()
	collect("Stats.LastError", st.LastError)
	collect("Watcher.Close", w.Close())
	return errs, rec.records()
}

// stressBuildCommand builds cmd/jobwatch once into a temporary directory.
func stressBuildCommand(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/jobwatch: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "jobwatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/jobwatch/jobwatch/cmd/jobwatch").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/jobwatch: %v\n%s", err, out)
	}
	return bin
}

func stressEnvWithout(env []string, drop ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
