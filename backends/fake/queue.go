package fake

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

var _ queue.Queue = (*Backend)(nil)

// The methods of queue.Queue beyond Enqueue and Apply. Each write is one
// commit, atomic, checked as the PostgreSQL backends check it, with their
// errors (the conformance package's RunQueue runs the same script on all
// three); each never blocks, returns ctx.Err() when ctx is done and an
// error matching ErrClosed after Close. Ids are checked as in Apply.

// Claim implements queue.Queue: the req.Limit queued jobs of
// req.Entrypoints with the highest priority, then the lowest id, whose
// ExecuteAfter has passed, marked picked in one commit (notifying once),
// with req.QueueManagerID recorded. A request that fails
// queue.ClaimRequest.Validate returns its error; nothing to claim returns
// no jobs and commits nothing.
func (b *Backend) Claim(ctx context.Context, req queue.ClaimRequest) ([]queue.Job, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("fake: claim: %w", err)
	}
	var ids []jobwatch.JobID
	var out []queue.Job
	err := b.write(ctx, "claim", func(st *stage) error {
		ids = claimable(st, req)
		qm := req.QueueManagerID
		for _, id := range ids {
			st.transition(op{id: id, ev: statemachine.Claim, to: statemachine.Picked, qm: &qm})
		}
		return nil
	}, func() {
		for _, id := range ids {
			out = append(out, b.store.jobs[id].jobCopy())
		}
	})
	return out, err
}

// claimable returns the ids a claim picks, in the order it returns them.
func claimable(st *stage, req queue.ClaimRequest) []jobwatch.JobID {
	var cands []*record
	for _, r := range st.base.jobs {
		if r.job.Status == statemachine.Queued && !r.job.ExecuteAfter.After(st.now) && slices.Contains(req.Entrypoints, r.job.Entrypoint) {
			cands = append(cands, r)
		}
	}
	slices.SortFunc(cands, func(a, b *record) int {
		return cmp.Or(cmp.Compare(b.job.Priority, a.job.Priority), cmp.Compare(a.job.ID, b.job.ID))
	})
	ids := make([]jobwatch.JobID, 0, min(len(cands), req.Limit))
	for _, r := range cands[:min(len(cands), req.Limit)] {
		ids = append(ids, r.job.ID)
	}
	return ids
}

// Heartbeat implements queue.Queue: it sets the heartbeat of picked jobs
// to now. It changes no state: nothing is logged, nobody is notified, and
// it does not count in Counters.Commits, as a heartbeat sends no
// notification on PostgreSQL. A job that is not picked returns a
// *queue.NotPickedError for the first such id.
func (b *Backend) Heartbeat(ctx context.Context, ids ...jobwatch.JobID) error {
	if err := checkIDs("heartbeat", ids); err != nil {
		return err
	}
	return b.write(ctx, "heartbeat", func(st *stage) error {
		for _, id := range ids {
			if cur, _ := st.state(id); cur != statemachine.Picked {
				return &queue.NotPickedError{ID: id, State: cur}
			}
		}
		for _, id := range ids {
			st.heartbeat(id)
		}
		return nil
	}, nil)
}

// Complete implements queue.Queue: picked jobs end successful.
func (b *Backend) Complete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Complete, ids, nil)
}

// Exception implements queue.Queue: a picked job ends as exception, with
// tb recorded in its log row as PostgreSQL stores it (queue.Traceback's
// Encode; Inspect parses it back). A traceback Encode refuses returns its
// error (matching queue.ErrInvalidJob).
func (b *Backend) Exception(ctx context.Context, id jobwatch.JobID, tb queue.Traceback) error {
	if err := checkCtx(ctx); err != nil {
		return err
	}
	if err := checkIDs("exception", []jobwatch.JobID{id}); err != nil {
		return err
	}
	raw, err := tb.Encode(id, now())
	if err != nil {
		return fmt.Errorf("fake: exception: %w", err)
	}
	return b.apply(ctx, statemachine.Error, []jobwatch.JobID{id}, queue.ParseTraceback(raw))
}

// Cancel implements queue.Queue: queued or picked jobs end canceled.
func (b *Backend) Cancel(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Cancel, ids, nil)
}

// Hold implements queue.Queue: picked jobs are parked as failed.
func (b *Backend) Hold(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Hold, ids, nil)
}

// Retry implements queue.Queue: picked jobs go back in the queue, counting
// an attempt.
func (b *Backend) Retry(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Retry, ids, nil)
}

// Requeue implements queue.Queue: held jobs go back in the queue with
// their attempts reset. A held job whose dedupe key another job took
// meanwhile returns a *queue.DuplicateError naming it.
func (b *Backend) Requeue(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Requeue, ids, nil)
}

// Delete implements queue.Queue: queued or held jobs end deleted.
func (b *Backend) Delete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Delete, ids, nil)
}

// Inspect implements queue.Queue: job id's committed state, queue row
// (nil once it ended) and history. It is not a status read: it does not
// count in Counters.Reads and FailReads and BlockReads do not affect it. It
// returns an error matching queue.ErrUnknownJob for a job that does not
// exist and one matching jobwatch.ErrInvalidID for id <= 0.
func (b *Backend) Inspect(ctx context.Context, id jobwatch.JobID) (queue.JobInfo, error) {
	if err := checkCtx(ctx); err != nil {
		return queue.JobInfo{}, err
	}
	if err := checkIDs("inspect", []jobwatch.JobID{id}); err != nil {
		return queue.JobInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.store.jobs[id]
	switch {
	case b.closed:
		return queue.JobInfo{}, fmt.Errorf("fake: inspect: %w", ErrClosed)
	case !ok:
		return queue.JobInfo{}, fmt.Errorf("fake: inspect: %w %d", queue.ErrUnknownJob, int64(id))
	}
	return r.info(), nil
}
