package pq_test

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jmoiron/sqlx"
	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Failures a live server cannot produce on demand, at exact points: every
// statement is matched verbatim against the shared SQL (so the backend sends
// pgschema's text and nothing else), arrays arrive in lib/pq's encoding,
// the error comes back wrapped with context (errors.Is the injected error),
// and a failed transaction is rolled back.

var errInjected = errors.New("injected failure")

const mockPassword = "mock-pw-Secret9"

type mockEnv struct {
	t     *testing.T
	mock  sqlmock.Sqlmock
	b     *jwpq.Backend
	names pgschema.Names
	ctx   context.Context
}

func newMock(t *testing.T) *mockEnv {
	t.Helper()
	db, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b, err := jwpq.New(sqlx.NewDb(db, "postgres"), "postgres://u:"+mockPassword+"@db.invalid/d")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgschema.NewNames("", "")
	if err != nil {
		t.Fatal(err)
	}
	m := &mockEnv{t: t, mock: mock, b: b, names: names, ctx: context.Background()}
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Errorf("sqlmock: %v", err)
		}
	})
	return m
}

// wantErr checks that err wraps want (when given), names the operation, and
// hides the DSN's password.
func wantErr(t *testing.T, err, want error, op string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", op)
	}
	if want != nil && !errors.Is(err, want) {
		t.Errorf("%s: %v does not wrap %v", op, err, want)
	}
	if !strings.Contains(err.Error(), "jobwatch/pq: "+op) {
		t.Errorf("error %q lacks context %q", err, "jobwatch/pq: "+op)
	}
	if strings.Contains(err.Error(), mockPassword) {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestMockFetchStatuses(t *testing.T) {
	ids := []jobwatch.JobID{3, 1, 2}
	t.Run("failing query", func(t *testing.T) {
		m := newMock(t)
		m.mock.ExpectQuery(m.names.FetchStatusesSQL()).WithArgs("{3,1,2}").WillReturnError(errInjected)
		_, err := m.b.FetchStatuses(m.ctx, ids)
		wantErr(t, err, errInjected, "fetch statuses")
	})
	t.Run("scan error", func(t *testing.T) {
		m := newMock(t)
		m.mock.ExpectQuery(m.names.FetchStatusesSQL()).WithArgs("{3,1,2}").
			WillReturnRows(sqlmock.NewRows([]string{"job_id", "status"}).AddRow(3, "queued").AddRow("not-an-id", "picked"))
		got, err := m.b.FetchStatuses(m.ctx, ids)
		wantErr(t, err, nil, "fetch statuses")
		if got != nil {
			t.Errorf("partial result %v returned with the error", got)
		}
	})
	t.Run("failing row read", func(t *testing.T) {
		m := newMock(t)
		m.mock.ExpectQuery(m.names.FetchStatusesSQL()).WithArgs("{3,1,2}").
			WillReturnRows(sqlmock.NewRows([]string{"job_id", "status"}).AddRow(3, "queued").AddRow(1, "picked").RowError(1, errInjected))
		got, err := m.b.FetchStatuses(m.ctx, ids)
		wantErr(t, err, errInjected, "fetch statuses")
		if got != nil {
			t.Errorf("partial result %v returned with the error", got)
		}
	})
	t.Run("unknown status", func(t *testing.T) {
		m := newMock(t)
		m.mock.ExpectQuery(m.names.FetchStatusesSQL()).WithArgs("{3,1,2}").
			WillReturnRows(sqlmock.NewRows([]string{"job_id", "status"}).AddRow(3, "exploded"))
		_, err := m.b.FetchStatuses(m.ctx, ids)
		wantErr(t, err, statemachine.ErrUnknownState, "fetch statuses")
	})
}

func TestMockEnqueue(t *testing.T) {
	jobs := []queue.NewJob{{Entrypoint: "a", Payload: []byte("x")}, {Entrypoint: "b"}}
	expect := func(m *mockEnv) *sqlmock.ExpectedQuery {
		st, err := m.names.Enqueue(jobs)
		if err != nil {
			t.Fatal(err)
		}
		m.mock.ExpectBegin()
		// lib/pq's array encodings of the shared statement's arguments.
		return m.mock.ExpectQuery(st.SQL).WithArgs("{0,0}", `{"a","b"}`, `{"\\x78","\\x"}`, "{0,0}", `{"",""}`, `{"",""}`)
	}
	t.Run("failing begin", func(t *testing.T) {
		m := newMock(t)
		m.mock.ExpectBegin().WillReturnError(errInjected)
		_, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, errInjected, "enqueue")
	})
	t.Run("failing query", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnError(errInjected)
		m.mock.ExpectRollback()
		_, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, errInjected, "enqueue")
	})
	t.Run("scan error", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1).AddRow("x"))
		m.mock.ExpectRollback()
		ids, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, nil, "enqueue")
		if ids != nil {
			t.Errorf("ids %v returned with the error", ids)
		}
	})
	t.Run("failing row read", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1).AddRow(2).RowError(1, errInjected))
		m.mock.ExpectRollback()
		_, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, errInjected, "enqueue")
	})
	t.Run("too few ids", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
		m.mock.ExpectRollback()
		_, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, nil, "enqueue")
	})
	t.Run("dedupe violation", func(t *testing.T) {
		m := newMock(t)
		keyed := []queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}}
		st, err := m.names.Enqueue(keyed)
		if err != nil {
			t.Fatal(err)
		}
		m.mock.ExpectBegin()
		m.mock.ExpectQuery(st.SQL).WillReturnError(&libpq.Error{Code: "23505", Constraint: m.names.IdxDedupe, Detail: "Key (dedupe_key)=(k) already exists."})
		m.mock.ExpectRollback()
		// The holder is read outside the failed transaction.
		m.mock.ExpectQuery(m.names.DedupeHolders(nil).SQL).WithArgs(`{"k"}`).
			WillReturnRows(sqlmock.NewRows([]string{"dedupe_key", "id"}).AddRow("k", 41))
		_, err = m.b.Enqueue(m.ctx, keyed...)
		wantErr(t, err, jwpq.ErrDuplicate, "enqueue")
		var dup *queue.DuplicateError
		if !errors.As(err, &dup) || dup.ID != 41 {
			t.Errorf("err = %v, want the holder 41", err)
		}
	})
	t.Run("failing commit", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1).AddRow(2))
		m.mock.ExpectCommit().WillReturnError(errInjected)
		ids, err := m.b.Enqueue(m.ctx, jobs...)
		wantErr(t, err, errInjected, "enqueue")
		if ids != nil {
			t.Errorf("ids %v returned although the commit failed", ids)
		}
	})
	t.Run("ok", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(7).AddRow(8))
		m.mock.ExpectCommit()
		ids, err := m.b.Enqueue(m.ctx, jobs...)
		if err != nil || len(ids) != 2 || ids[0] != 7 || ids[1] != 8 {
			t.Errorf("Enqueue = %v, %v", ids, err)
		}
	})
}

func TestMockTransition(t *testing.T) {
	ids := []jobwatch.JobID{5, 6}
	expect := func(m *mockEnv) *sqlmock.ExpectedQuery {
		st, err := m.names.Transition(statemachine.Complete, []int64{5, 6}, "")
		if err != nil {
			t.Fatal(err)
		}
		m.mock.ExpectBegin()
		return m.mock.ExpectQuery(st.SQL).WithArgs("{5,6}")
	}
	t.Run("failing query", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnError(errInjected)
		m.mock.ExpectRollback()
		wantErr(t, m.b.Complete(m.ctx, ids...), errInjected, "complete")
	})
	t.Run("scan error", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5).AddRow("six"))
		m.mock.ExpectRollback()
		wantErr(t, m.b.Complete(m.ctx, ids...), nil, "complete")
	})
	t.Run("failing row read", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5).AddRow(6).RowError(1, errInjected))
		m.mock.ExpectRollback()
		wantErr(t, m.b.Complete(m.ctx, ids...), errInjected, "complete")
	})
	t.Run("failing commit", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5).AddRow(6))
		m.mock.ExpectCommit().WillReturnError(errInjected)
		wantErr(t, m.b.Complete(m.ctx, ids...), errInjected, "complete")
	})
	t.Run("illegal for one job: diagnosed, rolled back", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5))
		d := m.names.Diagnose(6)
		m.mock.ExpectQuery(d.SQL).WithArgs(int64(6)).WillReturnRows(sqlmock.NewRows([]string{"q", "l"}).AddRow("queued", "queued"))
		m.mock.ExpectRollback()
		err := m.b.Complete(m.ctx, ids...)
		var te *statemachine.TransitionError
		if !errors.As(err, &te) || te.ID != 6 || te.From != statemachine.Queued {
			t.Errorf("Complete = %v, want a TransitionError for job 6 from queued", err)
		}
	})
	t.Run("failing diagnosis", func(t *testing.T) {
		m := newMock(t)
		expect(m).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5))
		d := m.names.Diagnose(6)
		m.mock.ExpectQuery(d.SQL).WithArgs(int64(6)).WillReturnError(errInjected)
		m.mock.ExpectRollback()
		wantErr(t, m.b.Complete(m.ctx, ids...), errInjected, "complete")
	})
	t.Run("exception traceback argument", func(t *testing.T) {
		m := newMock(t)
		st, err := m.names.Transition(statemachine.Error, []int64{5}, `{"e":1}`)
		if err != nil {
			t.Fatal(err)
		}
		m.mock.ExpectBegin()
		m.mock.ExpectQuery(st.SQL).WithArgs("{5}", `{"e":1}`).WillReturnRows(sqlmock.NewRows([]string{"job_id"}).AddRow(5))
		m.mock.ExpectCommit()
		if err := m.b.Exception(m.ctx, 5, queue.Traceback{Raw: json.RawMessage(`{"e": 1}`)}); err != nil {
			t.Errorf("Exception: %v", err)
		}
	})
}

func TestMockClaim(t *testing.T) {
	req := queue.ClaimRequest{Entrypoints: []string{"a"}, Limit: 2}
	expectSelect := func(m *mockEnv) *sqlmock.ExpectedQuery {
		sel, err := m.names.ClaimSelect(req)
		if err != nil {
			t.Fatal(err)
		}
		m.mock.ExpectBegin()
		return m.mock.ExpectQuery(sel.SQL).WithArgs(`{"a"}`, int64(2))
	}
	t.Run("failing select", func(t *testing.T) {
		m := newMock(t)
		expectSelect(m).WillReturnError(errInjected)
		m.mock.ExpectRollback()
		_, err := m.b.Claim(m.ctx, req)
		wantErr(t, err, errInjected, "claim")
	})
	t.Run("failing update", func(t *testing.T) {
		m := newMock(t)
		expectSelect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
		up := m.names.ClaimUpdate([]int64{1}, [16]byte{})
		m.mock.ExpectQuery(up.SQL).WithArgs("{1}", "").WillReturnError(errInjected)
		m.mock.ExpectRollback()
		_, err := m.b.Claim(m.ctx, req)
		wantErr(t, err, errInjected, "claim")
	})
	t.Run("job scan error", func(t *testing.T) {
		m := newMock(t)
		expectSelect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
		up := m.names.ClaimUpdate([]int64{1}, [16]byte{})
		m.mock.ExpectQuery(up.SQL).WithArgs("{1}", "").WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
		m.mock.ExpectRollback()
		_, err := m.b.Claim(m.ctx, req)
		wantErr(t, err, nil, "claim")
	})
	t.Run("nothing to claim commits nothing written", func(t *testing.T) {
		m := newMock(t)
		expectSelect(m).WillReturnRows(sqlmock.NewRows([]string{"id"}))
		m.mock.ExpectCommit()
		if jobs, err := m.b.Claim(m.ctx, req); err != nil || len(jobs) != 0 {
			t.Errorf("Claim = %v, %v", jobs, err)
		}
	})
}

func TestMockInstall(t *testing.T) {
	m := newMock(t)
	m.mock.ExpectBegin()
	m.mock.ExpectExec(m.names.LockSQL()).WillReturnResult(driver.RowsAffected(0))
	m.mock.ExpectQuery(m.names.StateSQL()).WillReturnError(errInjected)
	m.mock.ExpectRollback()
	res, err := m.b.Install(m.ctx)
	if res.Created || len(res.Changes) > 0 {
		t.Errorf("Install = %+v despite the failure", res)
	}
	wantErr(t, err, errInjected, "install")
}
