package pgcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// dedupeAttempts bounds how often a write refused by the dedupe index is
// tried again because the key's holder ended before it could be read.
const dedupeAttempts = 3

// Enqueue: see the backends' Enqueue. A dedupe violation is answered with
// the key's holder, read once the failed statement has rolled back; when
// the holder ended meanwhile (the key is free again) the whole enqueue is
// tried again, at most dedupeAttempts times in all.
func (c *Core) Enqueue(ctx context.Context, jobs []queue.NewJob) ([]jobwatch.JobID, error) {
	st, err := c.c.Names.Enqueue(jobs)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		ids, err := c.enqueueOnce(ctx, st, len(jobs))
		if err == nil {
			return ids, nil
		}
		if !c.isDedupe(err) {
			return nil, c.Fail("enqueue", err)
		}
		dup, err := c.enqueueHolder(ctx, jobs)
		if err != nil {
			return nil, c.Fail("enqueue: read the holder of a dedupe key", err)
		}
		if dup.ID != 0 || attempt == dedupeAttempts {
			return nil, c.Fail("enqueue", dup)
		}
	}
}

// enqueueOnce runs the enqueue statement and reads the ids back.
func (c *Core) enqueueOnce(ctx context.Context, st pgschema.Stmt, n int) ([]jobwatch.JobID, error) {
	var ids []int64
	run := func(q Querier) error {
		var err error
		ids, err = queryInt64s(ctx, q, st)
		if err != nil {
			return err
		}
		if len(ids) != n {
			return fmt.Errorf("returned %d ids for %d jobs", len(ids), n)
		}
		return nil
	}
	var err error
	if c.c.EnqueueInTx {
		err = c.c.DB.InTx(ctx, run)
	} else {
		err = run(c.c.DB)
	}
	if err != nil {
		return nil, err
	}
	out := make([]jobwatch.JobID, len(ids))
	for i, id := range ids {
		out[i] = jobwatch.JobID(id)
	}
	return out, nil
}

// isDedupe reports whether err broke the dedupe index.
func (c *Core) isDedupe(err error) bool {
	code, constraint, _, ok := c.c.PgError(err)
	return ok && c.c.Names.IsDedupeViolation(code, constraint)
}

// enqueueHolder names the first of jobs whose key is held now, and its
// holder. With none held (the holder ended), ID is 0 and Index names the
// first job with a key.
func (c *Core) enqueueHolder(ctx context.Context, jobs []queue.NewJob) (*queue.DuplicateError, error) {
	var keys []string
	first := -1
	for i, j := range jobs {
		if j.DedupeKey != "" {
			keys = append(keys, j.DedupeKey)
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return nil, errors.New("dedupe violation by jobs without a dedupe key")
	}
	held := map[string]int64{}
	st := c.c.Names.DedupeHolders(keys)
	err := query(ctx, c.c.DB, st.SQL, st.Args, func(r Rows) error {
		var key string
		var id int64
		if err := r.Scan(&key, &id); err != nil {
			return err
		}
		held[key] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := range jobs {
		if id, ok := held[j.DedupeKey]; ok && j.DedupeKey != "" {
			return &queue.DuplicateError{Index: i, Key: j.DedupeKey, ID: jobwatch.JobID(id)}, nil
		}
	}
	return &queue.DuplicateError{Index: first, Key: jobs[first].DedupeKey}, nil
}

// Claim: see the backends' Claim.
func (c *Core) Claim(ctx context.Context, req queue.ClaimRequest) ([]queue.Job, error) {
	sel, err := c.c.Names.ClaimSelect(req)
	if err != nil {
		return nil, err
	}
	var jobs []queue.Job
	err = c.c.DB.InTx(ctx, func(q Querier) error {
		ids, err := queryInt64s(ctx, q, sel)
		if err != nil || len(ids) == 0 {
			return err
		}
		up := c.c.Names.ClaimUpdate(ids, req.QueueManagerID)
		err = query(ctx, q, up.SQL, up.Args, func(r Rows) error {
			j, err := pgschema.ScanJob(r.Scan)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		})
		if err == nil && len(jobs) != len(ids) {
			err = fmt.Errorf("claimed %d of %d locked jobs", len(jobs), len(ids))
		}
		return err
	})
	if err != nil {
		return nil, c.Fail("claim", err)
	}
	return jobs, nil
}

// Apply applies ev to ids (see the backends' Apply), with traceback (JSON
// text, "" for NULL) stored by statemachine.Error. It runs the guarded
// transition; if it left any job untouched, it diagnoses the first such job
// in the same transaction, rolls back and returns that job's
// TransitionError unwrapped. A requeue refused by the dedupe index returns
// the *queue.DuplicateError naming the key's holder (tried again, as
// Enqueue is, when the holder ended meanwhile).
func (c *Core) Apply(ctx context.Context, ev statemachine.Event, ids []jobwatch.JobID, traceback string) error {
	list, err := pgschema.JobIDs(ids)
	if err != nil {
		return err
	}
	st, err := c.c.Names.Transition(ev, list, traceback)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := c.guarded(ctx, ev.String(), st, list, func(id int64, queueStatus, logStatus string) error {
			return pgschema.TransitionFailure(ev, id, queueStatus, logStatus)
		})
		if err == nil || !c.isDedupe(err) {
			return err
		}
		dup, ended, err := c.applyHolder(ctx, ids, list)
		if err != nil {
			return c.Fail(ev.String()+": read the holder of a dedupe key", err)
		}
		if !ended || attempt == dedupeAttempts {
			return c.Fail(ev.String(), dup)
		}
	}
}

// guarded runs st, a statement that changes the jobs of list it may and
// returns their ids, in a transaction. If it left any job untouched, it
// diagnoses the first such job in the same transaction, rolls back and
// returns fail's error for it unwrapped. Other errors are wrapped with op,
// except a dedupe violation, returned as is for the caller to recognize.
func (c *Core) guarded(ctx context.Context, op string, st pgschema.Stmt, list []int64, fail func(id int64, queueStatus, logStatus string) error) error {
	var failure error
	err := c.c.DB.InTx(ctx, func(q Querier) error {
		done, err := queryInt64s(ctx, q, st)
		if err != nil {
			return err
		}
		missing := pgschema.Missing(list, done)
		if len(missing) == 0 {
			return nil
		}
		d := c.c.Names.Diagnose(missing[0])
		var queueStatus, logStatus string
		if err := queryRow(ctx, q, d.SQL, d.Args, &queueStatus, &logStatus); err != nil {
			return err
		}
		failure = fail(missing[0], queueStatus, logStatus)
		return failure
	})
	switch {
	case failure != nil && errors.Is(err, failure):
		return failure
	case err == nil, c.isDedupe(err):
		return err
	}
	return c.Fail(op, err)
}

// applyHolder names the first held job of ids (a requeue's) whose dedupe
// key another queued or picked job holds, and that holder; else the first
// whose key an earlier job of ids has too (ID 0). With neither, the holder
// ended: ended is true and the error names the first held job with a key.
func (c *Core) applyHolder(ctx context.Context, ids []jobwatch.JobID, list []int64) (dup *queue.DuplicateError, ended bool, err error) {
	type row struct {
		key    string
		held   bool // the job is held (failed): a requeue would take its key
		holder int64
	}
	rows := map[int64]row{}
	st := c.c.Names.HoldersOf(list)
	err = query(ctx, c.c.DB, st.SQL, st.Args, func(r Rows) error {
		var id int64
		var x row
		var status string
		if err := r.Scan(&id, &x.key, &status, &x.holder); err != nil {
			return err
		}
		x.held = status == statemachine.Failed.String()
		rows[id] = x
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	for i, id := range ids {
		if x := rows[int64(id)]; x.held && x.holder != 0 {
			return &queue.DuplicateError{Index: i, Key: x.key, ID: jobwatch.JobID(x.holder)}, false, nil
		}
	}
	taken := map[string]jobwatch.JobID{}
	fallback := &queue.DuplicateError{Index: -1}
	for i, id := range ids {
		x := rows[int64(id)]
		if !x.held {
			continue
		}
		if first, ok := taken[x.key]; ok && first != id {
			return &queue.DuplicateError{Index: i, Key: x.key}, false, nil
		}
		taken[x.key] = id
		if fallback.Index < 0 {
			fallback = &queue.DuplicateError{Index: i, Key: x.key}
		}
	}
	return fallback, true, nil
}

// Exception applies statemachine.Error to id with tb (queue.Traceback's
// Encode): see the backends' Exception.
func (c *Core) Exception(ctx context.Context, id jobwatch.JobID, tb queue.Traceback) error {
	if id <= 0 {
		_, err := pgschema.JobIDs([]jobwatch.JobID{id})
		return err
	}
	raw, err := tb.Encode(id, time.Now())
	if err != nil {
		return err
	}
	return c.Apply(ctx, statemachine.Error, []jobwatch.JobID{id}, string(raw))
}

// Heartbeat: see the backends' Heartbeat.
func (c *Core) Heartbeat(ctx context.Context, ids []jobwatch.JobID) error {
	list, err := pgschema.JobIDs(ids)
	if err != nil {
		return err
	}
	err = c.guarded(ctx, "heartbeat", c.c.Names.Heartbeat(list), list, pgschema.HeartbeatFailure)
	if err != nil && c.isDedupe(err) { // cannot happen: a heartbeat changes no key
		return c.Fail("heartbeat", err)
	}
	return err
}

// Inspect: see the backends' Inspect. The queue row and the log are read
// in one read-only transaction, from one snapshot.
func (c *Core) Inspect(ctx context.Context, id jobwatch.JobID) (queue.JobInfo, error) {
	if id <= 0 {
		_, err := pgschema.JobIDs([]jobwatch.JobID{id})
		return queue.JobInfo{}, err
	}
	info := queue.JobInfo{ID: id}
	err := c.c.DB.InTx(ctx, func(q Querier) error {
		if err := q.Exec(ctx, pgschema.InspectTxSQL); err != nil {
			return err
		}
		st := c.c.Names.InspectJob(int64(id))
		err := query(ctx, q, st.SQL, st.Args, func(r Rows) error {
			j, err := pgschema.ScanJob(r.Scan)
			info.Job = &j
			return err
		})
		if err != nil {
			return err
		}
		st = c.c.Names.InspectLog(int64(id), queue.MaxHistory+1)
		return query(ctx, q, st.SQL, st.Args, func(r Rows) error {
			tr, err := pgschema.ScanTransition(r.Scan)
			info.History = append(info.History, tr)
			return err
		})
	})
	if err != nil {
		return queue.JobInfo{}, c.Fail("inspect", err)
	}
	if len(info.History) == 0 {
		return queue.JobInfo{}, fmt.Errorf("%w %d", queue.ErrUnknownJob, int64(id))
	}
	if len(info.History) > queue.MaxHistory {
		info.History, info.Truncated = info.History[:queue.MaxHistory], true
	}
	slices.Reverse(info.History)
	info.State = info.History[len(info.History)-1].State
	return info, nil
}
