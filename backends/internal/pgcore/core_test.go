package pgcore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The backends' suites run all of Core against a real server (and, for
// backends/pq, go-sqlmock). These tests pin what only Core decides: the
// Config switches, error wording and redaction, and that every result it
// opens is closed.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDB answers each statement with reply and records what ran.
type fakeDB struct {
	reply func(sql string, args []any) ([][]any, error)
	log   []string
	open  int // results not closed yet
}

type fakeQuerier struct {
	db   *fakeDB
	inTx bool
}

type fakeRows struct {
	db     *fakeDB
	rows   [][]any
	i      int
	closed bool
}

func (r *fakeRows) Next() bool { r.i++; return r.i <= len(r.rows) }
func (r *fakeRows) Err() error { return nil }
func (r *fakeRows) Close() error {
	if !r.closed {
		r.closed = true
		r.db.open--
	}
	return nil
}

func (r *fakeRows) Scan(dest ...any) error {
	row := r.rows[r.i-1]
	if len(row) != len(dest) {
		return errors.New("fake: column count")
	}
	for i, d := range dest {
		switch d := d.(type) {
		case *int64:
			v, ok := row[i].(int64)
			if !ok {
				return errors.New("fake: not an int64")
			}
			*d = v
		case *string:
			*d = row[i].(string)
		case *bool:
			*d = row[i].(bool)
		case *time.Time:
			*d = row[i].(time.Time)
		case *[]byte:
			*d, _ = row[i].([]byte)
		default:
			return errors.New("fake: unsupported destination")
		}
	}
	return nil
}

func (q fakeQuerier) Query(_ context.Context, sql string, args ...any) (Rows, error) {
	q.db.log = append(q.db.log, q.tag()+"query")
	rows, err := q.db.reply(sql, args)
	if err != nil {
		return nil, err
	}
	q.db.open++
	return &fakeRows{db: q.db, rows: rows}, nil
}

func (q fakeQuerier) Exec(_ context.Context, sql string, args ...any) error {
	q.db.log = append(q.db.log, q.tag()+"exec")
	_, err := q.db.reply(sql, args)
	return err
}

func (q fakeQuerier) tag() string {
	if q.inTx {
		return "tx "
	}
	return ""
}

func (d *fakeDB) Query(ctx context.Context, sql string, args ...any) (Rows, error) {
	return fakeQuerier{db: d}.Query(ctx, sql, args...)
}

func (d *fakeDB) Exec(ctx context.Context, sql string, args ...any) error {
	return fakeQuerier{db: d}.Exec(ctx, sql, args...)
}

func (d *fakeDB) InTx(_ context.Context, fn func(Querier) error) error {
	d.log = append(d.log, "begin")
	if err := fn(fakeQuerier{db: d, inTx: true}); err != nil {
		d.log = append(d.log, "rollback")
		return err
	}
	d.log = append(d.log, "commit")
	return nil
}

type dupError struct{ constraint string }

func (e dupError) Error() string { return "duplicate key, password hunter2" }

func newFake(t *testing.T, inTx bool, reply func(sql string, args []any) ([][]any, error)) (*Core, *fakeDB) {
	t.Helper()
	names, err := pgschema.NewNames("", "")
	if err != nil {
		t.Fatal(err)
	}
	db := &fakeDB{reply: reply}
	t.Cleanup(func() {
		if db.open != 0 {
			t.Errorf("%d results left open", db.open)
		}
	})
	c := New(Config{
		Names:  names,
		DB:     db,
		Prefix: "jobwatch/test",
		Redact: func(err error) error {
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				return errors.New(strings.ReplaceAll(err.Error(), "hunter2", "xxxxx"))
			}
			return err
		},
		PgError: func(err error) (string, string, string, bool) {
			var d dupError
			if errors.As(err, &d) {
				return "23505", d.constraint, "Key (dedupe_key)=(k) already exists.", true
			}
			return "", "", "", false
		},
		EnqueueInTx: inTx,
	})
	return c, db
}

func TestEnqueue(t *testing.T) {
	jobs := []queue.NewJob{{Entrypoint: "a"}, {Entrypoint: "b"}}
	for _, inTx := range []bool{false, true} {
		c, db := newFake(t, inTx, func(string, []any) ([][]any, error) {
			return [][]any{{int64(7)}, {int64(8)}}, nil
		})
		ids, err := c.Enqueue(context.Background(), jobs)
		if err != nil || len(ids) != 2 || ids[0] != 7 || ids[1] != 8 {
			t.Errorf("inTx=%v: Enqueue = %v, %v", inTx, ids, err)
		}
		want := "query"
		if inTx {
			want = "begin tx query commit"
		}
		if got := strings.Join(db.log, " "); got != want {
			t.Errorf("inTx=%v: ran %q, want %q", inTx, got, want)
		}
	}
	c, db := newFake(t, true, func(string, []any) ([][]any, error) { return [][]any{{int64(7)}}, nil })
	_, err := c.Enqueue(context.Background(), jobs)
	if err == nil || err.Error() != "jobwatch/test: enqueue: returned 1 ids for 2 jobs" {
		t.Errorf("too few ids: %v", err)
	}
	if got := strings.Join(db.log, " "); got != "begin tx query rollback" {
		t.Errorf("too few ids ran %q", got)
	}
	if _, err := c.Enqueue(context.Background(), nil); !errors.Is(err, queue.ErrInvalidJob) {
		t.Errorf("no jobs: %v", err)
	}
}

func TestApplyDiagnosesAndRollsBack(t *testing.T) {
	c, db := newFake(t, false, func(sql string, _ []any) ([][]any, error) {
		if strings.HasPrefix(sql, "SELECT COALESCE") { // Diagnose
			return [][]any{{"queued", "queued"}}, nil
		}
		return [][]any{{int64(5)}}, nil // the transition changed 5, not 6
	})
	err := c.Apply(context.Background(), statemachine.Complete, []jobwatch.JobID{5, 6, 6}, "")
	var te *statemachine.TransitionError
	if !errors.As(err, &te) || te.ID != 6 || te.From != statemachine.Queued || strings.Contains(err.Error(), "jobwatch/test") {
		t.Errorf("Apply = %v, want job 6's TransitionError, unwrapped", err)
	}
	if got := strings.Join(db.log, " "); got != "begin tx query tx query rollback" {
		t.Errorf("ran %q", got)
	}
	if err := c.Apply(context.Background(), statemachine.Complete, nil, ""); !errors.Is(err, jobwatch.ErrInvalidID) {
		t.Errorf("no ids: %v", err)
	}
}

func TestApplyFailureIsWrapped(t *testing.T) {
	c, _ := newFake(t, false, func(string, []any) ([][]any, error) { return [][]any{{"five"}}, nil })
	err := c.Apply(context.Background(), statemachine.Cancel, []jobwatch.JobID{5}, "")
	if err == nil || !strings.HasPrefix(err.Error(), "jobwatch/test: cancel: ") {
		t.Errorf("Apply = %v", err)
	}
}

func TestInstalledWithoutRow(t *testing.T) {
	c, _ := newFake(t, false, func(string, []any) ([][]any, error) { return nil, nil })
	if ok, err := c.Installed(context.Background()); ok || !errors.Is(err, errNoRows) ||
		!strings.HasPrefix(err.Error(), "jobwatch/test: installed: ") {
		t.Errorf("Installed = %v, %v", ok, err)
	}
}

func TestFetchStatuses(t *testing.T) {
	c, db := newFake(t, false, func(_ string, args []any) ([][]any, error) {
		if ids, ok := args[0].([]int64); !ok || len(ids) != 2 {
			t.Errorf("args %#v", args)
		}
		return [][]any{{int64(1), "picked"}, {int64(2), "exploded"}}, nil
	})
	if got, err := c.FetchStatuses(context.Background(), nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("no ids: %v, %v", got, err)
	}
	if len(db.log) != 0 {
		t.Errorf("no ids touched the database: %q", db.log)
	}
	got, err := c.FetchStatuses(context.Background(), []jobwatch.JobID{1, 2})
	if got != nil || !errors.Is(err, statemachine.ErrUnknownState) {
		t.Errorf("FetchStatuses = %v, %v", got, err)
	}
}

// One id is read with the statement for one, its id a plain bigint.
func TestFetchStatusesOneID(t *testing.T) {
	var ran []string
	c, _ := newFake(t, false, func(sql string, args []any) ([][]any, error) {
		ran = append(ran, sql)
		if id, ok := args[0].(int64); !ok || id != 7 {
			t.Errorf("args %#v", args)
		}
		return [][]any{{int64(7), "picked"}}, nil
	})
	got, err := c.FetchStatuses(context.Background(), []jobwatch.JobID{7})
	if err != nil || len(got) != 1 || got[0].ID != 7 || got[0].State != statemachine.Picked {
		t.Errorf("FetchStatuses = %v, %v", got, err)
	}
	if len(ran) != 1 || ran[0] != c.c.Names.FetchStatusSQL() {
		t.Errorf("ran %q, want FetchStatusSQL", ran)
	}
}

type option func(*Options)

func TestApplyOptions(t *testing.T) {
	errInvalid := errors.New("invalid option")
	def := Options{Health: 5 * time.Second}
	o, names, err := ApplyOptions([]option{func(o *Options) { o.Prefix = "p_" }}, def, errInvalid)
	if err != nil || o.Health != def.Health || o.Logger == nil || names.Channel != "p_ch_pgqueuer" {
		t.Errorf("ApplyOptions = %+v, %+v, %v", o, names, err)
	}
	for _, opts := range [][]option{
		{nil},
		{func(o *Options) { o.Health = -time.Second }},
	} {
		if _, _, err := ApplyOptions(opts, def, errInvalid); !errors.Is(err, errInvalid) {
			t.Errorf("ApplyOptions = %v, want errInvalid", err)
		}
	}
	if _, _, err := ApplyOptions([]option{func(o *Options) { o.Schema = "a.b" }}, def, errInvalid); !errors.Is(err, pgschema.ErrInvalidIdentifier) {
		t.Errorf("ApplyOptions = %v, want ErrInvalidIdentifier", err)
	}
}

type sub struct{ pid uint32 }

func (s *sub) PID() uint32 { return s.pid }

func TestSubscriptions(t *testing.T) {
	var r Subscriptions[*sub]
	a, b, unknown := &sub{10}, &sub{20}, &sub{0}
	r.Add(a)
	r.Add(b)
	r.Add(unknown)
	r.Remove(a)
	if got := r.PIDs(); len(got) != 1 || got[0] != 20 {
		t.Errorf("PIDs = %v", got)
	}
}

// TestInstallUpgradeFailureRollsBack: over a complete installation, a
// failing upgrade step fails the install naming the step, rolls the
// transaction back (every earlier step with it) and reports no change.
func TestInstallUpgradeFailureRollsBack(t *testing.T) {
	complete := [][]any{{true, true, true, true, true, true, true, true}}
	c, db := newFake(t, false, func(sql string, _ []any) ([][]any, error) {
		switch {
		case strings.HasPrefix(sql, "SELECT pg_advisory_xact_lock"):
			return nil, nil
		case strings.HasPrefix(sql, "SELECT true"): // StateSQL
			return complete, nil
		case strings.HasPrefix(sql, "SELECT 'index'"): // ExistingSQL: a legacy index only
			return [][]any{{"index", "pgqueuer_dequeue_after_idx", "pgqueuer_dequeue_after_idx"}}, nil
		case strings.HasPrefix(sql, "CREATE INDEX \"pgqueuer_priority_id_id1_idx\""):
			return nil, errors.New("deadlock detected")
		}
		return nil, nil
	})
	res, err := c.Install(context.Background())
	if res.Created || len(res.Changes) > 0 || err == nil ||
		err.Error() != "jobwatch/test: install: upgrade: created index pgqueuer_priority_id_id1_idx: deadlock detected" {
		t.Errorf("Install = %+v, %v", res, err)
	}
	// lock, state, existing, the rename, then the failing create.
	if got := strings.Join(db.log, " "); got != "begin tx exec tx query tx query tx exec tx exec rollback" {
		t.Errorf("ran %q", got)
	}
}
