package pgx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx,
		queue.NewJob{Entrypoint: "a", Payload: []byte("one"), Priority: 5, Headers: map[string]any{"k": "v"}, DedupeKey: "d1"},
		queue.NewJob{Entrypoint: "b"},
		queue.NewJob{Entrypoint: "c", ExecuteAfter: time.Hour, Priority: -3},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("ids = %v, want 3 increasing", ids)
	}
	type row struct {
		entry, dedupe, headers string
		payload                []byte
		prio                   int
		delayed                bool
	}
	get := func(id jobwatch.JobID) row {
		var r row
		err := e.pool.QueryRow(e.ctx, `SELECT entrypoint, COALESCE(dedupe_key, '-'), COALESCE(headers::text, '-'), payload, priority,
			execute_after > now() + interval '59 minutes' FROM `+e.b.QueueTable()+` WHERE id = $1 AND status = 'queued'`, int64(id)).
			Scan(&r.entry, &r.dedupe, &r.headers, &r.payload, &r.prio, &r.delayed)
		if err != nil {
			t.Fatalf("job %d: %v", id, err)
		}
		return r
	}
	if r := get(ids[0]); r.entry != "a" || r.dedupe != "d1" || r.headers != `{"k": "v"}` || string(r.payload) != "one" || r.prio != 5 || r.delayed {
		t.Errorf("job 0 = %+v", r)
	}
	if r := get(ids[1]); r.entry != "b" || r.dedupe != "-" || r.headers != "-" || r.payload != nil || r.prio != 0 {
		t.Errorf("job 1 = %+v", r)
	}
	if r := get(ids[2]); r.entry != "c" || !r.delayed || r.prio != -3 {
		t.Errorf("job 2 = %+v", r)
	}
	for _, id := range ids {
		if st := e.status(id); st != statemachine.Queued {
			t.Errorf("job %d is %v", id, st)
		}
	}
	if n := e.count("SELECT count(*) FROM " + e.b.LogTable() + " WHERE status = 'queued'"); n != 3 {
		t.Errorf("%d queued log rows", n)
	}
}

// TestEnqueueOrderLargeBatch checks ids come back in input order for a
// batch large enough for the planner to choose freely.
func TestEnqueueOrderLargeBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jobs := make([]queue.NewJob, 2000)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: fmt.Sprintf("e%04d", i), Priority: (i * 7919) % 13}
	}
	ids, err := e.b.Enqueue(e.ctx, jobs...)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.pool.Query(e.ctx, "SELECT id, entrypoint FROM "+e.b.QueueTable())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]string{}
	for rows.Next() {
		var id int64
		var ep string
		if err := rows.Scan(&id, &ep); err != nil {
			t.Fatal(err)
		}
		byID[id] = ep
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for i, id := range ids {
		if byID[int64(id)] != jobs[i].Entrypoint {
			t.Fatalf("ids[%d] = %d is job %q, want %q", i, id, byID[int64(id)], jobs[i].Entrypoint)
		}
	}
}

func TestEnqueueRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, jobs := range [][]queue.NewJob{
		nil,
		{{}},
		{{Entrypoint: "ok"}, {Entrypoint: ""}},
		{{Entrypoint: "ok", ExecuteAfter: -time.Second}},
		{{Entrypoint: "nul\x00"}},
	} {
		if _, err := e.b.Enqueue(e.ctx, jobs...); !errors.Is(err, jwpgx.ErrInvalidJob) {
			t.Errorf("Enqueue(%+v) = %v, want ErrInvalidJob", jobs, err)
		}
	}
	if n := e.count("SELECT count(*) FROM " + e.b.QueueTable()); n != 0 {
		t.Errorf("%d rows written by rejected enqueues", n)
	}
}

func TestEnqueueDuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	rows, logs := e.count("SELECT count(*) FROM "+e.b.QueueTable()), e.count("SELECT count(*) FROM "+e.b.LogTable())
	var dup *queue.DuplicateError
	_, err = e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "other"}, queue.NewJob{Entrypoint: "a", DedupeKey: "k"})
	if !errors.Is(err, jwpgx.ErrDuplicate) || !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 1, Key: "k", ID: ids[0]}) {
		t.Fatalf("duplicate key: err = %v, want job 1's key held by %d", err, ids[0])
	}
	_, err = e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "x"}, queue.NewJob{Entrypoint: "a", DedupeKey: "x"})
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 1, Key: "x"}) {
		t.Fatalf("duplicate key within a batch: err = %v, want ErrDuplicate", err)
	}
	if q, l := e.count("SELECT count(*) FROM "+e.b.QueueTable()), e.count("SELECT count(*) FROM "+e.b.LogTable()); q != rows || l != logs {
		t.Errorf("failed enqueues wrote rows: %d/%d -> %d/%d", rows, logs, q, l)
	}
	// Picked still holds the key; a finished job frees it.
	if err := e.b.Apply(e.ctx, statemachine.Claim, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k"}); !errors.As(err, &dup) || dup.ID != ids[0] {
		t.Fatalf("key of a picked job: err = %v", err)
	}
	if err := e.b.Complete(e.ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k"}); err != nil {
		t.Fatalf("key of a finished job: %v", err)
	}
}

func TestClaimOrderAndFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx,
		queue.NewJob{Entrypoint: "a", Priority: 1}, // 0
		queue.NewJob{Entrypoint: "a", Priority: 9}, // 1
		queue.NewJob{Entrypoint: "b", Priority: 5}, // 2
		queue.NewJob{Entrypoint: "a", Priority: 9}, // 3
		queue.NewJob{Entrypoint: "c", Priority: 99},
		queue.NewJob{Entrypoint: "a", Priority: 50, ExecuteAfter: time.Hour}, // not yet
		queue.NewJob{Entrypoint: "a", Priority: 0},                           // 6
	)
	if err != nil {
		t.Fatal(err)
	}
	qm := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"a", "b"}, Limit: 4, QueueManagerID: qm})
	if err != nil {
		t.Fatal(err)
	}
	var got []jobwatch.JobID
	for _, j := range jobs {
		got = append(got, j.ID)
		if j.Status != statemachine.Picked || j.QueueManagerID != qm || e.status(j.ID) != statemachine.Picked {
			t.Errorf("claimed job %+v", j)
		}
	}
	want := []jobwatch.JobID{ids[1], ids[3], ids[2], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claimed %v, want %v (priority desc, id asc)", got, want)
	}
	// Only ids[6] is left for a/b: the delayed one is not due.
	jobs, err = e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"a", "b"}, Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[6] || jobs[0].QueueManagerID != ([16]byte{}) {
		t.Fatalf("second claim = %+v, %v", jobs, err)
	}
	if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"a", "b"}, Limit: 10}); err != nil || len(jobs) != 0 {
		t.Fatalf("third claim = %+v, %v", jobs, err)
	}
	// Once due, the delayed job is claimable.
	if _, err := e.pool.Exec(e.ctx, "UPDATE "+e.b.QueueTable()+" SET execute_after = now() - interval '1 second' WHERE id = $1", int64(ids[5])); err != nil {
		t.Fatal(err)
	}
	if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"a"}, Limit: 10}); err != nil || len(jobs) != 1 || jobs[0].ID != ids[5] {
		t.Fatalf("claim of the due job = %+v, %v", jobs, err)
	}
	if _, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"a"}}); !errors.Is(err, jwpgx.ErrInvalidJob) {
		t.Errorf("limit 0: %v", err)
	}
	if _, err := e.b.Claim(e.ctx, queue.ClaimRequest{Limit: 1}); !errors.Is(err, jwpgx.ErrInvalidJob) {
		t.Errorf("no entrypoints: %v", err)
	}
}

func TestClaimReturnsJobFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "x", Payload: []byte{0, 1, 2}, Priority: 3, DedupeKey: "dk", Headers: map[string]any{"a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"x"}, Limit: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %+v, %v", jobs, err)
	}
	j := jobs[0]
	if j.ID != ids[0] || j.Entrypoint != "x" || !bytes.Equal(j.Payload, []byte{0, 1, 2}) || j.Priority != 3 ||
		j.DedupeKey != "dk" || string(j.Headers) != `{"a": 1}` || j.Attempts != 0 || j.Created.IsZero() ||
		j.Heartbeat.Before(j.Created) || j.ExecuteAfter.IsZero() {
		t.Errorf("job = %+v", j)
	}
}

// TestClaimSendsNoNotifyWhenEmpty: an empty claim writes nothing, so it
// sends no NOTIFY (a statement-level trigger would fire even for 0 rows).
func TestClaimSendsNoNotifyWhenEmpty(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.listen()
	for range 3 {
		if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"none"}, Limit: 5}); err != nil || len(jobs) != 0 {
			t.Fatalf("Claim = %v, %v", jobs, err)
		}
	}
	if err := e.b.NotifyRaw(e.ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	// Notifications arrive in commit order: if a claim had notified, Next
	// would return before the marker was counted as ignored.
	if _, err := pgtest.NextWithin(sub, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want a timeout (nothing but the marker)", err)
	}
	if n := sub.Ignored(); n != 1 {
		t.Errorf("Ignored = %d, want 1 (the marker)", n)
	}
}

// TestClaimConcurrentSkipLocked: 8 claimers drain 1,000 jobs; each job is
// claimed exactly once.
func TestClaimConcurrentSkipLocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const total, workers = 1000, 8
	jobs := make([]queue.NewJob, total)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: "w", Priority: i % 7}
	}
	if _, err := e.b.Enqueue(e.ctx, jobs...); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		seen   = map[jobwatch.JobID]int{}
		errs   []error
		wg     sync.WaitGroup
		starts = make(chan struct{})
	)
	for w := range workers {
		wg.Go(func() {
			<-starts
			qm := [16]byte{byte(w + 1)}
			for {
				got, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"w"}, Limit: 7, QueueManagerID: qm})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, j := range got {
					seen[j.ID]++
				}
				mu.Unlock()
				if err != nil || len(got) == 0 {
					return
				}
			}
		})
	}
	close(starts)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("claim errors: %v", errs)
	}
	if len(seen) != total {
		t.Errorf("%d distinct jobs claimed, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %d claimed %d times", id, n)
		}
	}
	if n := e.count("SELECT count(*) FROM " + e.b.LogTable() + " WHERE status = 'picked'"); n != total {
		t.Errorf("%d picked log rows, want %d", n, total)
	}
}

// TestTransitions applies every event to a job in every state: legal pairs
// reach the table's target and log it; illegal ones fail with a
// TransitionError naming the current state and write nothing.
func TestTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, ev := range statemachine.Events() {
		if ev == statemachine.Enqueue {
			continue
		}
		for _, from := range statemachine.States() {
			id := e.jobIn(from)
			before := e.snapshot(id)
			err := e.b.Apply(e.ctx, ev, id)
			to, legalErr := statemachine.Transition(from, ev)
			if legalErr == nil {
				if err != nil {
					t.Errorf("%s from %s: %v", ev, from, err)
					continue
				}
				if got := e.status(id); got != to {
					t.Errorf("%s from %s: status %s, want %s", ev, from, got, to)
				}
				rowLeft := e.count("SELECT count(*) FROM "+e.b.QueueTable()+" WHERE id = $1", int64(id)) == 1
				if rowLeft == to.Terminal() {
					t.Errorf("%s from %s: queue row present = %v for %s", ev, from, rowLeft, to)
				}
				if !to.Terminal() {
					var st string
					e.pool.QueryRow(e.ctx, "SELECT status::text FROM "+e.b.QueueTable()+" WHERE id = $1", int64(id)).Scan(&st)
					if st != to.String() {
						t.Errorf("%s from %s: queue row status %q", ev, from, st)
					}
				}
				continue
			}
			var te *statemachine.TransitionError
			if !errors.As(err, &te) || !errors.Is(err, statemachine.ErrIllegalTransition) {
				t.Errorf("%s from %s: err = %v, want a TransitionError", ev, from, err)
				continue
			}
			if te.ID != int64(id) || te.From != from || te.Event != ev {
				t.Errorf("%s from %s: TransitionError %+v", ev, from, te)
			}
			if after := e.snapshot(id); after != before {
				t.Errorf("%s from %s: illegal transition wrote:\n%s\n%s", ev, from, before, after)
			}
		}
	}
}

func TestTransitionUnknownJobAndBadIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	err := e.b.Complete(e.ctx, 987654321)
	var te *statemachine.TransitionError
	if !errors.Is(err, jwpgx.ErrUnknownJob) || !errors.Is(err, statemachine.ErrIllegalTransition) || !errors.As(err, &te) || te.ID != 987654321 {
		t.Errorf("unknown job: %v", err)
	}
	id := e.jobIn(statemachine.Picked)
	before := e.snapshot(id)
	for _, ids := range [][]jobwatch.JobID{nil, {0}, {id, -1}} {
		if err := e.b.Complete(e.ctx, ids...); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("Complete(%v) = %v, want ErrInvalidID", ids, err)
		}
	}
	if err := e.b.Apply(e.ctx, statemachine.Enqueue, id); err == nil {
		t.Error("Apply(Enqueue) accepted")
	}
	if err := e.b.Apply(e.ctx, statemachine.Event(42), id); !errors.Is(err, statemachine.ErrUnknownEvent) {
		t.Errorf("Apply(42) = %v", err)
	}
	if after := e.snapshot(id); after != before {
		t.Errorf("rejected calls wrote:\n%s\n%s", before, after)
	}
}

// TestTransitionBatchAllOrNothing: one illegal job in a batch fails the
// batch, names that job, and leaves every job as it was.
func TestTransitionBatchAllOrNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p1, q, p2 := e.jobIn(statemachine.Picked), e.jobIn(statemachine.Queued), e.jobIn(statemachine.Picked)
	before := e.snapshot(p1) + e.snapshot(q) + e.snapshot(p2)
	err := e.b.Complete(e.ctx, p1, q, p2, p1)
	var te *statemachine.TransitionError
	if !errors.As(err, &te) || te.ID != int64(q) || te.From != statemachine.Queued {
		t.Fatalf("err = %v, want a TransitionError for job %d from queued", err, q)
	}
	if after := e.snapshot(p1) + e.snapshot(q) + e.snapshot(p2); after != before {
		t.Errorf("failed batch wrote:\n%s\n%s", before, after)
	}
	// Duplicates count once.
	if err := e.b.Complete(e.ctx, p1, p2, p1); err != nil {
		t.Fatal(err)
	}
	if e.status(p1) != statemachine.Successful || e.status(p2) != statemachine.Successful {
		t.Error("batch not applied")
	}
}

// TestTransitionRace: complete and cancel race for the same picked job;
// exactly one wins, the loser sees the winner's state, and exactly one
// terminal log row exists.
func TestTransitionRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 20 {
		id := e.jobIn(statemachine.Picked)
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for k, op := range []func(context.Context, ...jobwatch.JobID) error{e.b.Complete, e.b.Cancel} {
			wg.Go(func() {
				<-start
				errs[k] = op(e.ctx, id)
			})
		}
		close(start)
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: complete = %v, cancel = %v; want exactly one to win", i, errs[0], errs[1])
		}
		winner := statemachine.Successful
		loser := errs[1]
		if errs[0] != nil {
			winner, loser = statemachine.Canceled, errs[0]
		}
		var te *statemachine.TransitionError
		if !errors.As(loser, &te) || te.From != winner {
			t.Fatalf("round %d: loser's error %v, want From %s", i, loser, winner)
		}
		if got := e.status(id); got != winner {
			t.Fatalf("round %d: status %s, want %s", i, got, winner)
		}
		if n := e.count("SELECT count(*) FROM "+e.b.LogTable()+" WHERE job_id = $1 AND status IN ('successful', 'canceled')", int64(id)); n != 1 {
			t.Fatalf("round %d: %d terminal log rows", i, n)
		}
	}
}

func TestExceptionTraceback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := e.jobIn(statemachine.Picked), e.jobIn(statemachine.Picked), e.jobIn(statemachine.Picked)
	at := time.Date(2025, 1, 2, 3, 4, 5, 600000000, time.UTC)
	if err := e.b.Exception(e.ctx, a, queue.Traceback{ExceptionType: "ValueError", Traceback: "line 1", Timestamp: at}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Exception(e.ctx, b, queue.Traceback{Raw: json.RawMessage(`{"raw": true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Exception(e.ctx, c, queue.Traceback{}); err != nil {
		t.Fatal(err)
	}
	tb := func(id jobwatch.JobID) string {
		var s string
		if err := e.pool.QueryRow(e.ctx, "SELECT COALESCE(traceback::text, '-') FROM "+e.b.LogTable()+" WHERE job_id = $1 AND status = 'exception'", int64(id)).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// PgQueuer's TracebackRecord, all six fields, as jsonb prints it.
	want := fmt.Sprintf(`{"job_id": %d, "timestamp": "2025-01-02T03:04:05.6Z", "traceback": "line 1", "exception_type": "ValueError", `+
		`"exception_message": "", "additional_context": null}`, a)
	if got := tb(a); got != want {
		t.Errorf("traceback a = %s\nwant %s", got, want)
	}
	if got := tb(b); got != `{"raw": true}` {
		t.Errorf("traceback b = %s", got)
	}
	if got := tb(c); got != "-" {
		t.Errorf("traceback c = %s", got)
	}
	d := e.jobIn(statemachine.Picked)
	if err := e.b.Exception(e.ctx, d, queue.Traceback{Raw: json.RawMessage(`{bad`)}); !errors.Is(err, jwpgx.ErrInvalidJob) {
		t.Errorf("bad raw traceback: %v", err)
	}
	if e.status(d) != statemachine.Picked {
		t.Error("bad traceback changed the job")
	}
}

func TestRetryRequeueHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.jobIn(statemachine.Picked)
	attempts := func() (n int, qmNull bool) {
		if err := e.pool.QueryRow(e.ctx, "SELECT attempts, queue_manager_id IS NULL FROM "+e.b.QueueTable()+" WHERE id = $1", int64(id)).Scan(&n, &qmNull); err != nil {
			t.Fatal(err)
		}
		return n, qmNull
	}
	if err := e.b.Retry(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, _ := attempts(); n != 1 || e.status(id) != statemachine.Queued {
		t.Errorf("after retry: attempts %d, status %s", n, e.status(id))
	}
	if _, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"test"}, Limit: 1, QueueManagerID: [16]byte{9}}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Retry(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, qmNull := attempts(); n != 2 || !qmNull {
		t.Errorf("after second retry: attempts %d, queue manager cleared %v", n, qmNull)
	}
	if err := e.b.Apply(e.ctx, statemachine.Claim, id); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Hold(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if e.status(id) != statemachine.Failed {
		t.Fatalf("after hold: %s", e.status(id))
	}
	if err := e.b.Requeue(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if n, _ := attempts(); n != 0 || e.status(id) != statemachine.Queued {
		t.Errorf("after requeue: attempts %d, status %s", n, e.status(id))
	}
	if err := e.b.Delete(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	var log []string
	rows, _ := e.pool.Query(e.ctx, "SELECT status::text FROM "+e.b.LogTable()+" WHERE job_id = $1 ORDER BY id", int64(id))
	for rows.Next() {
		var s string
		rows.Scan(&s)
		log = append(log, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := "queued picked queued picked queued picked failed queued deleted"
	if strings.Join(log, " ") != want {
		t.Errorf("log = %v, want %s", log, want)
	}
}

func TestFetchStatuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q, p, s := e.jobIn(statemachine.Queued), e.jobIn(statemachine.Picked), e.jobIn(statemachine.Successful)
	got, err := e.b.FetchStatuses(e.ctx, []jobwatch.JobID{s, q, 999999, p, q, -1})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	want := []jobwatch.Status{{ID: q, State: statemachine.Queued}, {ID: p, State: statemachine.Picked}, {ID: s, State: statemachine.Successful}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FetchStatuses = %v, want %v", got, want)
	}
	// The newest row wins even when an older row has a later timestamp
	// within one transaction (created ties are broken by id).
	if _, err := e.pool.Exec(e.ctx, "INSERT INTO "+e.b.LogTable()+" (created, job_id, status, priority, entrypoint) VALUES (now() - interval '1 hour', $1, 'canceled', 0, 'test')", int64(q)); err != nil {
		t.Fatal(err)
	}
	if st := e.status(q); st != statemachine.Queued {
		t.Errorf("an older log row won: %s", st)
	}
	if got, err := e.b.FetchStatuses(e.ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("FetchStatuses(nil) = %v, %v", got, err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.b.FetchStatuses(ctx, []jobwatch.JobID{q}); !errors.Is(err, context.Canceled) {
		t.Errorf("FetchStatuses(cancelled) = %v", err)
	}
}

// endOnDuplicate is a pgx tracer that, the first time a statement fails
// with a unique violation, runs end before the failure reaches the
// backend: the dedupe key's holder ends in the window between the refused
// insert and the backend's look-up of the holder.
type endOnDuplicate struct {
	once sync.Once
	end  func()
}

func (e *endOnDuplicate) TraceQueryStart(ctx context.Context, _ *pgxv5.Conn, _ pgxv5.TraceQueryStartData) context.Context {
	return ctx
}

func (e *endOnDuplicate) TraceQueryEnd(_ context.Context, _ *pgxv5.Conn, data pgxv5.TraceQueryEndData) {
	var pgErr *pgconn.PgError
	if errors.As(data.Err, &pgErr) && pgErr.Code == "23505" {
		e.once.Do(e.end)
	}
}

// TestEnqueueDuplicateHolderEndsMeanwhile: the holder of a dedupe key ends
// after it made an enqueue fail and before the backend read who holds the
// key. The key is free then, so the enqueue is tried again and succeeds,
// rather than reporting a conflict with a job that no longer holds the key.
func TestEnqueueDuplicateHolderEndsMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	holder, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	tracer := &endOnDuplicate{end: func() {
		// On e's own pool: another connection, as another worker's.
		if err := e.b.Apply(e.ctx, statemachine.Claim, holder[0]); err != nil {
			t.Error(err)
		}
		if err := e.b.Complete(e.ctx, holder[0]); err != nil {
			t.Error(err)
		}
	}}
	cfg.ConnConfig.Tracer = tracer
	traced, err := pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer traced.Close()
	b, err := jwpgx.New(traced, jwpgx.WithSchema(e.schema), jwpgx.WithPrefix(e.schema+"_"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k"})
	if err != nil {
		t.Fatalf("Enqueue = %v, want it retried once the holder ended", err)
	}
	if st := e.status(holder[0]); st != statemachine.Successful {
		t.Fatalf("the holder is %s: the race did not happen", st)
	}
	info, err := b.Inspect(e.ctx, ids[0])
	if err != nil || info.Job == nil || info.Job.DedupeKey != "k" || info.State != statemachine.Queued {
		t.Fatalf("Inspect(new job) = %+v, %v", info, err)
	}
}
