package pgcore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// dedupeScript answers the statements of a write refused by the dedupe
// index: the write fails with a dedupe violation while fail says so, and
// the holder lookup returns holders (its rows) one reply at a time.
type dedupeScript struct {
	c       *Core
	writes  int        // writes run
	fail    int        // how many writes fail with a dedupe violation
	holders [][][]any  // replies of the successive holder lookups
	ok      [][]any    // the reply of a write that succeeds
	lookups []string   // the holder lookups run
	args    [][]string // their key arguments
}

func (d *dedupeScript) reply(sql string, args []any) ([][]any, error) {
	if strings.Contains(sql, "dedupe_key = ANY") || strings.Contains(sql, "h.dedupe_key = r.dedupe_key") {
		d.lookups = append(d.lookups, sql)
		if keys, ok := args[0].([]string); ok {
			d.args = append(d.args, keys)
		}
		if len(d.holders) == 0 {
			return nil, nil
		}
		rows := d.holders[0]
		d.holders = d.holders[1:]
		return rows, nil
	}
	d.writes++
	if d.writes <= d.fail {
		return nil, dupError{constraint: d.c.c.Names.IdxDedupe}
	}
	return d.ok, nil
}

func newDedupe(t *testing.T, inTx bool, d *dedupeScript) *Core {
	t.Helper()
	c, _ := newFake(t, inTx, d.reply)
	d.c = c
	return c
}

func TestEnqueueDuplicateNamesTheHolder(t *testing.T) {
	jobs := []queue.NewJob{{Entrypoint: "a"}, {Entrypoint: "a", DedupeKey: "k1"}, {Entrypoint: "a", DedupeKey: "k2"}}
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprint("inTx=", inTx), func(t *testing.T) {
			d := &dedupeScript{fail: 1, holders: [][][]any{{{"k2", int64(42)}}}}
			c := newDedupe(t, inTx, d)
			_, err := c.Enqueue(context.Background(), jobs)
			var dup *queue.DuplicateError
			if !errors.As(err, &dup) || !errors.Is(err, queue.ErrDuplicate) || *dup != (queue.DuplicateError{Index: 2, Key: "k2", ID: 42}) ||
				!strings.HasPrefix(err.Error(), "jobwatch/test: enqueue: ") {
				t.Fatalf("Enqueue = %v, want the DuplicateError of job 2, held by 42", err)
			}
			if d.writes != 1 || len(d.args) != 1 || strings.Join(d.args[0], ",") != "k1,k2" {
				t.Errorf("ran %d writes and lookups with keys %v", d.writes, d.args)
			}
		})
	}
}

// TestEnqueueDuplicateHolderEnded: the holder of the key ended between the
// refused write and the lookup, so the key is free; the enqueue is tried
// again, and succeeds.
func TestEnqueueDuplicateHolderEnded(t *testing.T) {
	d := &dedupeScript{fail: 1, ok: [][]any{{int64(9)}}}
	c := newDedupe(t, true, d)
	ids, err := c.Enqueue(context.Background(), []queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}})
	if err != nil || len(ids) != 1 || ids[0] != 9 || d.writes != 2 || len(d.lookups) != 1 {
		t.Errorf("Enqueue = %v, %v after %d writes and %d lookups; want [9] on the second write", ids, err, d.writes, len(d.lookups))
	}
	// Refused again, and this time a new holder is there.
	d = &dedupeScript{fail: 2, holders: [][][]any{nil, {{"k", int64(10)}}}}
	c = newDedupe(t, true, d)
	_, err = c.Enqueue(context.Background(), []queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}})
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) || dup.ID != 10 || d.writes != 2 {
		t.Errorf("Enqueue = %v after %d writes; want the new holder 10", err, d.writes)
	}
}

// TestEnqueueDuplicateGivesUp: holders that keep ending before they can be
// read stop the retries after dedupeAttempts writes, with ID 0.
func TestEnqueueDuplicateGivesUp(t *testing.T) {
	d := &dedupeScript{fail: 100}
	c := newDedupe(t, false, d)
	_, err := c.Enqueue(context.Background(), []queue.NewJob{{Entrypoint: "a"}, {Entrypoint: "a", DedupeKey: "k"}})
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 1, Key: "k"}) || d.writes != dedupeAttempts {
		t.Errorf("Enqueue = %v after %d writes; want a DuplicateError with no holder after %d", err, d.writes, dedupeAttempts)
	}
}

func TestEnqueueOtherUniqueViolation(t *testing.T) {
	// Another unique index is not a dedupe conflict; the error is redacted.
	c, _ := newFake(t, false, func(string, []any) ([][]any, error) { return nil, dupError{constraint: "other"} })
	_, err := c.Enqueue(context.Background(), []queue.NewJob{{Entrypoint: "a"}})
	if errors.Is(err, queue.ErrDuplicate) || err == nil || err.Error() != "jobwatch/test: enqueue: duplicate key, password xxxxx" {
		t.Errorf("Enqueue = %v", err)
	}
	// A repeat within the batch never reaches the database.
	c, db := newFake(t, false, func(string, []any) ([][]any, error) { return nil, nil })
	_, err = c.Enqueue(context.Background(), []queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}, {Entrypoint: "a", DedupeKey: "k"}})
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 1, Key: "k"}) || len(db.log) != 0 {
		t.Errorf("Enqueue = %v, ran %q", err, db.log)
	}
}

func TestRequeueDuplicateNamesTheHolder(t *testing.T) {
	d := &dedupeScript{fail: 1, holders: [][][]any{{{int64(6), "k", "failed", int64(50)}}}}
	c := newDedupe(t, false, d)
	err := c.Apply(context.Background(), statemachine.Requeue, []jobwatch.JobID{5, 5, 6}, "")
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 2, Key: "k", ID: 50}) ||
		!strings.HasPrefix(err.Error(), "jobwatch/test: requeue: ") {
		t.Errorf("Requeue = %v, want job 6 (index 2) refused, key held by 50", err)
	}
	// Two held jobs with one key, requeued together: the second is
	// refused, and no other job holds the key.
	d = &dedupeScript{fail: 1, holders: [][][]any{{{int64(5), "k", "failed", int64(0)}, {int64(7), "k", "failed", int64(0)}}}}
	c = newDedupe(t, false, d)
	err = c.Apply(context.Background(), statemachine.Requeue, []jobwatch.JobID{5, 5, 7}, "")
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 2, Key: "k"}) {
		t.Errorf("Requeue = %v, want job 7 (index 2) refused for repeating 5's key", err)
	}
	// The holder ended meanwhile: the requeue is tried again.
	d = &dedupeScript{fail: 1, ok: [][]any{{int64(6)}}}
	c = newDedupe(t, false, d)
	if err := c.Apply(context.Background(), statemachine.Requeue, []jobwatch.JobID{6}, ""); err != nil || d.writes != 2 {
		t.Errorf("Requeue = %v after %d writes; want success on the second", err, d.writes)
	}
}

func TestHeartbeat(t *testing.T) {
	c, db := newFake(t, false, func(sql string, _ []any) ([][]any, error) {
		if strings.HasPrefix(sql, "SELECT COALESCE") { // Diagnose
			return [][]any{{"", "successful"}}, nil
		}
		return [][]any{{int64(5)}}, nil // only 5 was picked
	})
	err := c.Heartbeat(context.Background(), []jobwatch.JobID{5, 6})
	var np *queue.NotPickedError
	if !errors.As(err, &np) || *np != (queue.NotPickedError{ID: 6, State: statemachine.Successful}) || errors.Is(err, queue.ErrUnknownJob) {
		t.Errorf("Heartbeat = %v, want job 6 not picked (successful)", err)
	}
	if got := strings.Join(db.log, " "); got != "begin tx query tx query rollback" {
		t.Errorf("ran %q", got)
	}
	if err := c.Heartbeat(context.Background(), []jobwatch.JobID{0}); !errors.Is(err, jobwatch.ErrInvalidID) {
		t.Errorf("Heartbeat(0) = %v", err)
	}
}

func TestInspect(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	logRows := func(n int) [][]any {
		var rows [][]any
		for i := n - 1; i >= 0; i-- { // newest first, as the statement sorts
			st := "queued"
			if i%2 == 1 {
				st = "picked"
			}
			rows = append(rows, []any{st, t0.Add(time.Duration(i) * time.Second), "ep", int64(1), ""})
		}
		return rows
	}
	var queueRow []any
	var log [][]any
	c, db := newFake(t, false, func(sql string, _ []any) ([][]any, error) {
		switch {
		case strings.HasPrefix(sql, "SET TRANSACTION"):
			return nil, nil
		case strings.Contains(sql, "FROM \"pgqueuer_log\""):
			return log, nil
		}
		if queueRow == nil {
			return nil, nil
		}
		return [][]any{queueRow}, nil
	})
	queueRow = []any{int64(7), int64(1), "ep", []byte("p"), "", "picked", int64(0), "", "", t0, t0, t0, t0}
	log = logRows(2)
	info, err := c.Inspect(context.Background(), 7)
	if err != nil || info.ID != 7 || info.State != statemachine.Picked || info.Job == nil || string(info.Job.Payload) != "p" ||
		len(info.History) != 2 || info.History[0].State != statemachine.Queued || !info.History[1].At.Equal(t0.Add(time.Second)) || info.Truncated {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
	if got := strings.Join(db.log, " "); got != "begin tx exec tx query tx query commit" {
		t.Errorf("ran %q, want both reads in one transaction", got)
	}

	// Ended: no queue row. A long log keeps its newest MaxHistory rows.
	queueRow, log = nil, logRows(queue.MaxHistory+1)
	info, err = c.Inspect(context.Background(), 7)
	if err != nil || info.Job != nil || !info.Truncated || len(info.History) != queue.MaxHistory ||
		!info.History[0].At.Equal(t0.Add(time.Second)) || info.State != statemachine.Queued {
		t.Errorf("Inspect of a long history = job %v, %d rows (first at %v), truncated %v, state %s, %v",
			info.Job, len(info.History), info.History[0].At, info.Truncated, info.State, err)
	}

	log = nil
	if _, err := c.Inspect(context.Background(), 7); !errors.Is(err, queue.ErrUnknownJob) {
		t.Errorf("Inspect of an unknown job = %v", err)
	}
	if _, err := c.Inspect(context.Background(), -1); !errors.Is(err, jobwatch.ErrInvalidID) {
		t.Errorf("Inspect(-1) = %v", err)
	}
}

func TestExceptionEncodesTheTraceback(t *testing.T) {
	var stored []any
	c, _ := newFake(t, false, func(_ string, args []any) ([][]any, error) {
		stored = args
		return [][]any{{int64(3)}}, nil
	})
	if err := c.Exception(context.Background(), 3, queue.Traceback{ExceptionType: "ValueError"}); err != nil {
		t.Fatal(err)
	}
	tb := queue.ParseTraceback([]byte(stored[1].(string)))
	if tb.JobID != 3 || tb.ExceptionType != "ValueError" || tb.Timestamp.IsZero() {
		t.Errorf("stored %s", stored[1])
	}
	if err := c.Exception(context.Background(), 3, queue.Traceback{Raw: []byte("{")}); !errors.Is(err, queue.ErrInvalidJob) {
		t.Errorf("bad Raw: %v", err)
	}
	if err := c.Exception(context.Background(), 0, queue.Traceback{}); !errors.Is(err, jobwatch.ErrInvalidID) {
		t.Errorf("id 0: %v", err)
	}
}
