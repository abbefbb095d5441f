package pq_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestEnqueueStoresEverything(t *testing.T) {
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx,
		queue.NewJob{Entrypoint: "a", Payload: []byte("\x00bin\xff"), Priority: 7, DedupeKey: "k1",
			Headers: map[string]any{"trace": "t-1", "n": 2}},
		queue.NewJob{Entrypoint: "b", ExecuteAfter: time.Hour},
		queue.NewJob{Entrypoint: "c", Priority: -3},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("ids = %v, want 3 increasing ids in input order", ids)
	}
	type row struct {
		Entrypoint string  `db:"entrypoint"`
		Payload    []byte  `db:"payload"`
		Priority   int     `db:"priority"`
		Dedupe     *string `db:"dedupe_key"`
		Headers    *string `db:"headers"`
		Status     string  `db:"status"`
		Delayed    bool    `db:"delayed"`
		Logs       int     `db:"logs"`
	}
	var rows []row
	if err := e.db.SelectContext(e.ctx, &rows, `SELECT entrypoint, payload, priority, dedupe_key, headers::text AS headers,
		status::text AS status, execute_after > now() + interval '59 minutes' AS delayed,
		(SELECT count(*) FROM `+e.b.LogTable()+` l WHERE l.job_id = q.id AND l.status = 'queued') AS logs
		FROM `+e.b.QueueTable()+` q WHERE id = ANY($1::bigint[]) ORDER BY id`, fmt.Sprintf("{%d,%d,%d}", ids[0], ids[1], ids[2])); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	a, b, c := rows[0], rows[1], rows[2]
	if a.Entrypoint != "a" || string(a.Payload) != "\x00bin\xff" || a.Priority != 7 || a.Dedupe == nil || *a.Dedupe != "k1" ||
		a.Headers == nil || *a.Headers != `{"n": 2, "trace": "t-1"}` || a.Status != "queued" || a.Delayed || a.Logs != 1 {
		t.Errorf("job a stored as %+v", a)
	}
	if b.Payload != nil || b.Dedupe != nil || b.Headers != nil || !b.Delayed || b.Logs != 1 {
		t.Errorf("job b stored as %+v", b)
	}
	if c.Priority != -3 || c.Logs != 1 {
		t.Errorf("job c stored as %+v", c)
	}

	// Invalid jobs write nothing.
	before := e.count(`SELECT count(*) FROM ` + e.b.QueueTable())
	for _, bad := range [][]queue.NewJob{nil, {{}}, {{Entrypoint: "ok"}, {Entrypoint: "x", ExecuteAfter: -1}}} {
		if _, err := e.b.Enqueue(e.ctx, bad...); !errors.Is(err, jwpq.ErrInvalidJob) {
			t.Errorf("Enqueue(%+v) = %v, want ErrInvalidJob", bad, err)
		}
	}
	// A duplicate dedupe key fails the whole batch.
	if _, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "ok"}, queue.NewJob{Entrypoint: "a", DedupeKey: "k1"}); !errors.Is(err, jwpq.ErrDuplicate) {
		t.Errorf("duplicate dedupe key: %v, want ErrDuplicate", err)
	}
	if _, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k2"}, queue.NewJob{Entrypoint: "a", DedupeKey: "k2"}); !errors.Is(err, jwpq.ErrDuplicate) {
		t.Errorf("dedupe key repeated in a batch: %v, want ErrDuplicate", err)
	}
	if after := e.count(`SELECT count(*) FROM ` + e.b.QueueTable()); after != before {
		t.Errorf("refused enqueues wrote %d jobs", after-before)
	}
	// Once the holder is finished, the key is free again.
	if err := e.b.Cancel(e.ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "a", DedupeKey: "k1"}); err != nil {
		t.Errorf("dedupe key of a finished job: %v", err)
	}
}

// Every lifecycle method: its status, its queue row (kept or deleted), its
// log row.
func TestLifecycleMethods(t *testing.T) {
	e := newEnv(t)
	queueRow := func(id jobwatch.JobID) (status string, attempts int, ok bool) {
		err := e.db.QueryRowxContext(e.ctx, `SELECT status::text, attempts FROM `+e.b.QueueTable()+` WHERE id = $1`, int64(id)).Scan(&status, &attempts)
		return status, attempts, err == nil
	}
	check := func(what string, id jobwatch.JobID, want statemachine.State, rowKept bool) {
		t.Helper()
		if got := e.status(id); got != want {
			t.Errorf("%s: status %s, want %s", what, got, want)
		}
		st, _, ok := queueRow(id)
		if ok != rowKept || (ok && st != want.String()) {
			t.Errorf("%s: queue row %q present=%v, want present=%v", what, st, ok, rowKept)
		}
	}
	ids := e.enqueue(8)
	jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"test"}, Limit: 6,
		QueueManagerID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}})
	if err != nil || len(jobs) != 6 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	for i, j := range jobs {
		if j.ID != ids[i] || j.Status != statemachine.Picked || j.Entrypoint != "test" || j.QueueManagerID[15] != 16 {
			t.Errorf("claimed job %d = %+v", i, j)
		}
		check("claim", j.ID, statemachine.Picked, true)
	}
	p1, p2, p3, p4, p5, p6, q1, q2 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7]

	if err := e.b.Complete(e.ctx, p1); err != nil {
		t.Fatal(err)
	}
	check("complete", p1, statemachine.Successful, false)

	if err := e.b.Exception(e.ctx, p2, queue.Traceback{ExceptionType: "ValueError", AdditionalContext: map[string]any{"lines": []string{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	check("exception", p2, statemachine.Exception, false)
	var tb string
	if err := e.db.QueryRowxContext(e.ctx, `SELECT traceback::text FROM `+e.b.LogTable()+` WHERE job_id = $1 AND status = 'exception'`, int64(p2)).Scan(&tb); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(tb), &got); err != nil || got["exception_type"] != "ValueError" || got["job_id"] != float64(p2) {
		t.Errorf("traceback stored as %s (%v)", tb, err)
	}
	if err := e.b.Exception(e.ctx, p3, queue.Traceback{Raw: json.RawMessage(`{"raw":`)}); !errors.Is(err, jwpq.ErrInvalidJob) {
		t.Errorf("invalid raw traceback: %v", err)
	}

	if err := e.b.Cancel(e.ctx, p3, q1); err != nil {
		t.Fatal(err)
	}
	check("cancel picked", p3, statemachine.Canceled, false)
	check("cancel queued", q1, statemachine.Canceled, false)

	if err := e.b.Hold(e.ctx, p4); err != nil {
		t.Fatal(err)
	}
	check("hold", p4, statemachine.Failed, true)

	if err := e.b.Retry(e.ctx, p5); err != nil {
		t.Fatal(err)
	}
	check("retry", p5, statemachine.Queued, true)
	if _, attempts, _ := queueRow(p5); attempts != 1 {
		t.Errorf("retry: attempts %d, want 1", attempts)
	}

	if err := e.b.Requeue(e.ctx, p4); err != nil {
		t.Fatal(err)
	}
	check("requeue", p4, statemachine.Queued, true)

	if err := e.b.Delete(e.ctx, q2); err != nil {
		t.Fatal(err)
	}
	check("delete queued", q2, statemachine.Deleted, false)
	if err := e.b.Hold(e.ctx, p6); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Delete(e.ctx, p6); err != nil {
		t.Fatal(err)
	}
	check("delete held", p6, statemachine.Deleted, false)

	// The full history of p4: queued, picked, failed, queued.
	var hist []string
	if err := e.db.SelectContext(e.ctx, &hist, `SELECT status::text FROM `+e.b.LogTable()+` WHERE job_id = $1 ORDER BY created, id`, int64(p4)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(hist) != "[queued picked failed queued]" {
		t.Errorf("history of a held then requeued job: %v", hist)
	}

	// Invalid ids.
	for _, bad := range [][]jobwatch.JobID{nil, {0}, {1, -2}} {
		if err := e.b.Complete(e.ctx, bad...); !errors.Is(err, jobwatch.ErrInvalidID) {
			t.Errorf("Complete(%v) = %v, want ErrInvalidID", bad, err)
		}
	}
	if err := e.b.Apply(e.ctx, statemachine.Enqueue, q2); err == nil {
		t.Errorf("Apply(enqueue) accepted")
	}
	// Claim with nothing to claim writes nothing.
	logs := e.count(`SELECT count(*) FROM ` + e.b.LogTable())
	if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"nothing-here"}, Limit: 5}); err != nil || len(jobs) != 0 {
		t.Errorf("empty Claim = %v, %v", jobs, err)
	}
	if n := e.count(`SELECT count(*) FROM ` + e.b.LogTable()); n != logs {
		t.Errorf("an empty claim wrote %d log rows", n-logs)
	}
	if _, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"test"}}); !errors.Is(err, jwpq.ErrInvalidJob) {
		t.Errorf("Claim with limit 0: %v", err)
	}
}

// Every illegal (state, event) pair is refused with a TransitionError that
// names the job and its state, and writes nothing; so is a batch that is
// legal for some jobs only, and a transition of a job that never existed.
func TestIllegalTransitionsWriteNothing(t *testing.T) {
	e := newEnv(t)
	jobs := map[statemachine.State]jobwatch.JobID{}
	for _, st := range statemachine.States() {
		jobs[st] = e.jobIn(st)
	}
	for _, st := range statemachine.States() {
		for _, ev := range statemachine.Events() {
			if ev == statemachine.Enqueue || statemachine.Legal(st, ev) {
				continue
			}
			id := jobs[st]
			before := e.snapshot(id)
			err := e.b.Apply(e.ctx, ev, id)
			var te *statemachine.TransitionError
			if !errors.Is(err, statemachine.ErrIllegalTransition) || !errors.As(err, &te) {
				t.Errorf("%s from %s: %v, want a *statemachine.TransitionError", ev, st, err)
				continue
			}
			if te.ID != int64(id) || te.From != st || te.Event != ev {
				t.Errorf("%s from %s: error %+v", ev, st, te)
			}
			if after := e.snapshot(id); after != before {
				t.Errorf("%s from %s wrote:\nbefore %s\nafter  %s", ev, st, before, after)
			}
		}
	}
	// Mixed batch: legal for the picked job, illegal for the queued one.
	p, q := e.jobIn(statemachine.Picked), e.jobIn(statemachine.Queued)
	bp, bq := e.snapshot(p), e.snapshot(q)
	err := e.b.Complete(e.ctx, p, q)
	var te *statemachine.TransitionError
	if !errors.As(err, &te) || te.ID != int64(q) || te.From != statemachine.Queued {
		t.Errorf("mixed batch: %v", err)
	}
	if e.snapshot(p) != bp || e.snapshot(q) != bq {
		t.Errorf("mixed batch wrote its legal part")
	}
	// A job that never existed.
	const unknown = jobwatch.JobID(1 << 50)
	if err := e.b.Apply(e.ctx, statemachine.Claim, unknown); !errors.Is(err, jwpq.ErrUnknownJob) || !errors.Is(err, statemachine.ErrIllegalTransition) {
		t.Errorf("claim of an unknown job: %v", err)
	}
	if err := e.b.Cancel(e.ctx, q, unknown); !errors.Is(err, jwpq.ErrUnknownJob) {
		t.Errorf("cancel of a queued and an unknown job: %v", err)
	}
	if e.snapshot(q) != bq {
		t.Errorf("cancel with an unknown job wrote its legal part")
	}
}

// Two transactions race to finish the same picked job (complete against
// cancel): exactly one wins, the other gets a TransitionError, and the job
// has exactly one terminal log row.
func TestRaceCompleteCancel(t *testing.T) {
	e := newEnv(t)
	const rounds = 25
	ids := e.enqueue(rounds)
	if err := e.b.Apply(e.ctx, statemachine.Claim, ids...); err != nil {
		t.Fatal(err)
	}
	wins := map[string]int{}
	for _, id := range ids {
		start := make(chan struct{})
		var wg sync.WaitGroup
		var errComplete, errCancel error
		wg.Add(2)
		go func() { defer wg.Done(); <-start; errComplete = e.b.Complete(e.ctx, id) }()
		go func() { defer wg.Done(); <-start; errCancel = e.b.Cancel(e.ctx, id) }()
		close(start)
		wg.Wait()
		var want statemachine.State
		switch {
		case errComplete == nil && errors.Is(errCancel, statemachine.ErrIllegalTransition):
			want = statemachine.Successful
		case errCancel == nil && errors.Is(errComplete, statemachine.ErrIllegalTransition):
			want = statemachine.Canceled
		default:
			t.Fatalf("job %d: complete %v, cancel %v; want exactly one to win", id, errComplete, errCancel)
		}
		wins[want.String()]++
		if got := e.status(id); got != want {
			t.Errorf("job %d: status %s, want the winner's %s", id, got, want)
		}
		if n := e.count(`SELECT count(*) FROM `+e.b.LogTable()+` WHERE job_id = $1 AND status IN ('successful', 'canceled')`, int64(id)); n != 1 {
			t.Errorf("job %d: %d terminal log rows", id, n)
		}
	}
	t.Logf("winners: %v", wins)
}

func TestClaimOrdering(t *testing.T) {
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx,
		queue.NewJob{Entrypoint: "a", Priority: 1},  // 0
		queue.NewJob{Entrypoint: "a", Priority: 5},  // 1
		queue.NewJob{Entrypoint: "b", Priority: 9},  // 2: other entrypoint
		queue.NewJob{Entrypoint: "a", Priority: 5},  // 3
		queue.NewJob{Entrypoint: "a", Priority: -1}, // 4
		queue.NewJob{Entrypoint: "c", Priority: 3},  // 5
	)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(limit int, eps ...string) []jobwatch.JobID {
		t.Helper()
		jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: eps, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]jobwatch.JobID, len(jobs))
		for i, j := range jobs {
			out[i] = j.ID
		}
		return out
	}
	if got, want := claim(3, "a"), []jobwatch.JobID{ids[1], ids[3], ids[0]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("first claim = %v, want %v (priority desc, then id)", got, want)
	}
	if got, want := claim(10, "a", "c"), []jobwatch.JobID{ids[5], ids[4]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("second claim = %v, want %v", got, want)
	}
	if got := claim(10, "a"); len(got) != 0 {
		t.Errorf("third claim = %v, want none", got)
	}
	if got := claim(10, "b"); len(got) != 1 || got[0] != ids[2] {
		t.Errorf("claim b = %v", got)
	}
}

// execute_after is respected: a delayed job is not claimed until its time
// has come (moved into the past here rather than waited for).
func TestClaimExecuteAfter(t *testing.T) {
	e := newEnv(t)
	ids, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "d", ExecuteAfter: time.Hour}, queue.NewJob{Entrypoint: "d"})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"d"}, Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[1] {
		t.Fatalf("Claim = %v, %v; want only the undelayed job", jobs, err)
	}
	if jobs, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"d"}, Limit: 10}); err != nil || len(jobs) != 0 {
		t.Fatalf("Claim before execute_after = %v, %v", jobs, err)
	}
	e.exec(`UPDATE `+e.b.QueueTable()+` SET execute_after = now() - interval '1 second' WHERE id = $1`, int64(ids[0]))
	jobs, err = e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"d"}, Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[0] {
		t.Fatalf("Claim after execute_after = %v, %v", jobs, err)
	}
}

// SKIP LOCKED: 8 goroutines claim 1,000 jobs concurrently; each job is
// claimed exactly once.
func TestClaimSkipLocked(t *testing.T) {
	e := newEnv(t)
	const total, workers = 1000, 8
	jobs := make([]queue.NewJob, total)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: "many", Priority: i % 7}
	}
	ids, err := e.b.Enqueue(e.ctx, jobs...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		claimed []jobwatch.JobID
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				got, err := e.b.Claim(e.ctx, queue.ClaimRequest{Entrypoints: []string{"many"}, Limit: 7})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, j := range got {
					claimed = append(claimed, j.ID)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(claimed) != total {
		t.Fatalf("claimed %d jobs, want %d", len(claimed), total)
	}
	sort.Slice(claimed, func(i, j int) bool { return claimed[i] < claimed[j] })
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i := range ids {
		if claimed[i] != ids[i] {
			t.Fatalf("claimed ids differ from enqueued ones at %d: %d vs %d (duplicates?)", i, claimed[i], ids[i])
		}
	}
	if n := e.count(`SELECT count(*) FROM ` + e.b.LogTable() + ` WHERE status = 'picked'`); n != total {
		t.Errorf("%d picked log rows, want %d", n, total)
	}
}
