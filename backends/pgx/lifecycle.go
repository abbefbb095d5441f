package pgx

import (
	"context"
	"errors"
	"fmt"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/statemachine"
)

// rollbackTimeout bounds the rollback of a failed transaction, which runs
// even when the caller's ctx is done.
const rollbackTimeout = 5 * time.Second

// Enqueue inserts jobs, each with its "queued" log row, in one statement
// (one transaction, one NOTIFY) and returns their ids in input order. An
// invalid job returns an error matching ErrInvalidJob and writes nothing; a
// dedupe key already held by a queued or picked job (or repeated in jobs)
// returns an error matching ErrDuplicate and writes nothing.
func (b *Backend) Enqueue(ctx context.Context, jobs ...NewJob) ([]jobwatch.JobID, error) {
	st, err := b.names.Enqueue(jobs)
	if err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, st.SQL, st.Args...)
	if err != nil {
		return nil, b.writeErr("enqueue", err)
	}
	ids, err := pgxv5.CollectRows(rows, pgxv5.RowTo[int64])
	if err != nil {
		return nil, b.writeErr("enqueue", err)
	}
	if len(ids) != len(jobs) {
		return nil, fmt.Errorf("jobwatch/pgx: enqueue returned %d ids for %d jobs", len(ids), len(jobs))
	}
	out := make([]jobwatch.JobID, len(ids))
	for i, id := range ids {
		out[i] = jobwatch.JobID(id)
	}
	return out, nil
}

func (b *Backend) writeErr(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && b.names.IsDedupeViolation(pgErr.Code, pgErr.ConstraintName) {
		return fmt.Errorf("jobwatch/pgx: %s: %w: %s", op, ErrDuplicate, pgErr.Detail)
	}
	return fmt.Errorf("jobwatch/pgx: %s: %w", op, err)
}

// Claim picks up to req.Limit queued jobs of req.Entrypoints whose
// execute_after has passed, highest priority first, then oldest, skipping
// jobs other claimers hold (FOR UPDATE SKIP LOCKED); it marks them picked
// and logs it, in one transaction, and returns them in that order. When
// there is nothing to claim it writes nothing and returns no jobs.
func (b *Backend) Claim(ctx context.Context, req ClaimRequest) ([]Job, error) {
	sel, err := b.names.ClaimSelect(req)
	if err != nil {
		return nil, err
	}
	var jobs []Job
	err = b.inTx(ctx, func(tx pgxv5.Tx) error {
		rows, err := tx.Query(ctx, sel.SQL, sel.Args...)
		if err != nil {
			return err
		}
		ids, err := pgxv5.CollectRows(rows, pgxv5.RowTo[int64])
		if err != nil || len(ids) == 0 {
			return err
		}
		up := b.names.ClaimUpdate(ids, req.QueueManagerID)
		rows, err = tx.Query(ctx, up.SQL, up.Args...)
		if err != nil {
			return err
		}
		jobs, err = pgxv5.CollectRows(rows, func(r pgxv5.CollectableRow) (Job, error) {
			return pgschema.ScanJob(r.Scan)
		})
		if err == nil && len(jobs) != len(ids) {
			err = fmt.Errorf("claimed %d of %d locked jobs", len(jobs), len(ids))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobwatch/pgx: claim: %w", err)
	}
	return jobs, nil
}

// Apply applies ev to every id in one transaction, all or nothing: each job
// must be in a state ev is legal from (statemachine.Sources), checked by the
// statement itself under row locks. If any is not (including because a
// concurrent transaction changed it), nothing is written and the error is
// a *statemachine.TransitionError for the first such job, with its current
// status (matching statemachine.ErrIllegalTransition; an id the database
// has never seen also matches ErrUnknownJob). Terminal events delete the
// queue rows; all events log the new status. Enqueue is not accepted (use
// Enqueue). ids must be positive and not empty (else an error matching
// jobwatch.ErrInvalidID); duplicates count once.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return b.apply(ctx, ev, ids, "")
}

func (b *Backend) apply(ctx context.Context, ev statemachine.Event, ids []jobwatch.JobID, traceback string) error {
	list, err := pgschema.JobIDs(ids)
	if err != nil {
		return err
	}
	st, err := b.names.Transition(ev, list, traceback)
	if err != nil {
		return err
	}
	var failure error
	err = b.inTx(ctx, func(tx pgxv5.Tx) error {
		rows, err := tx.Query(ctx, st.SQL, st.Args...)
		if err != nil {
			return err
		}
		done, err := pgxv5.CollectRows(rows, pgxv5.RowTo[int64])
		if err != nil {
			return err
		}
		missing := pgschema.Missing(list, done)
		if len(missing) == 0 {
			return nil
		}
		d := b.names.Diagnose(missing[0])
		var queueStatus, logStatus string
		if err := tx.QueryRow(ctx, d.SQL, d.Args...).Scan(&queueStatus, &logStatus); err != nil {
			return err
		}
		failure = pgschema.TransitionFailure(ev, missing[0], queueStatus, logStatus)
		return failure
	})
	if failure != nil && errors.Is(err, failure) {
		return failure
	}
	if err != nil {
		return fmt.Errorf("jobwatch/pgx: %s: %w", ev, err)
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil and
// rolling back (bounded, even if ctx is done) otherwise.
func (b *Backend) inTx(ctx context.Context, fn func(pgxv5.Tx) error) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
		return err
	}
	return tx.Commit(ctx)
}

// Complete marks picked jobs successful (deleting their queue rows).
func (b *Backend) Complete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Complete, ids, "")
}

// Exception marks a picked job as failed with an exception, storing
// traceback (encoded with encoding/json; a json.RawMessage is stored as is;
// nil stores NULL) in its log row.
func (b *Backend) Exception(ctx context.Context, id jobwatch.JobID, traceback any) error {
	tb, err := marshalTraceback(traceback)
	if err != nil {
		return err
	}
	return b.apply(ctx, statemachine.Error, []jobwatch.JobID{id}, tb)
}

// Cancel cancels queued or picked jobs.
func (b *Backend) Cancel(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Cancel, ids, "")
}

// Hold parks picked jobs as failed (held) with their payload, until
// Requeue or Delete.
func (b *Backend) Hold(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Hold, ids, "")
}

// Retry puts picked jobs back in the queue, counting an attempt.
func (b *Backend) Retry(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Retry, ids, "")
}

// Requeue puts held (failed) jobs back in the queue, resetting their
// attempts as PgQueuer does.
func (b *Backend) Requeue(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Requeue, ids, "")
}

// Delete deletes queued or held jobs.
func (b *Backend) Delete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.apply(ctx, statemachine.Delete, ids, "")
}
