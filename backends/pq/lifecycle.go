package pq

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/statemachine"
)

// args adapts a shared statement's arguments to database/sql: lib/pq takes
// arrays through pq.Array (the SQL casts each one, e.g. $1::bigint[]).
func args(st pgschema.Stmt) []any {
	out := make([]any, len(st.Args))
	for i, a := range st.Args {
		switch a.(type) {
		case []int64, []string, [][]byte, []float64, []bool:
			out[i] = libpq.Array(a)
		default:
			out[i] = a
		}
	}
	return out
}

// Enqueue inserts jobs, each with its "queued" log row, in one statement
// and one transaction (one NOTIFY), and returns their ids in input order.
// An invalid job returns an error matching ErrInvalidJob and writes
// nothing; a dedupe key already held by a queued or picked job (or repeated
// in jobs) returns an error matching ErrDuplicate and writes nothing. Any
// other failure, including one while reading the ids back, rolls the whole
// batch back.
func (b *Backend) Enqueue(ctx context.Context, jobs ...NewJob) ([]jobwatch.JobID, error) {
	st, err := b.names.Enqueue(jobs)
	if err != nil {
		return nil, err
	}
	var ids []int64
	err = b.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.SelectContext(ctx, &ids, st.SQL, args(st)...); err != nil {
			return err
		}
		if len(ids) != len(jobs) {
			return fmt.Errorf("returned %d ids for %d jobs", len(ids), len(jobs))
		}
		return nil
	})
	if err != nil {
		return nil, b.writeErr("enqueue", err)
	}
	out := make([]jobwatch.JobID, len(ids))
	for i, id := range ids {
		out[i] = jobwatch.JobID(id)
	}
	return out, nil
}

func (b *Backend) writeErr(op string, err error) error {
	var pqErr *libpq.Error
	if errors.As(err, &pqErr) && b.names.IsDedupeViolation(string(pqErr.Code), pqErr.Constraint) {
		return b.dsn.redactErr(fmt.Errorf("jobwatch/pq: %s: %w: %s", op, ErrDuplicate, pqErr.Detail))
	}
	return b.fail(op, err)
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
	err = b.inTx(ctx, func(tx *sqlx.Tx) error {
		var ids []int64
		if err := tx.SelectContext(ctx, &ids, sel.SQL, args(sel)...); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		up := b.names.ClaimUpdate(ids, req.QueueManagerID)
		rows, err := tx.QueryxContext(ctx, up.SQL, args(up)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			j, err := pgschema.ScanJob(rows.Scan)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(jobs) != len(ids) {
			return fmt.Errorf("claimed %d of %d locked jobs", len(jobs), len(ids))
		}
		return nil
	})
	if err != nil {
		return nil, b.fail("claim", err)
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
	err = b.inTx(ctx, func(tx *sqlx.Tx) error {
		var done []int64
		if err := tx.SelectContext(ctx, &done, st.SQL, args(st)...); err != nil {
			return err
		}
		missing := pgschema.Missing(list, done)
		if len(missing) == 0 {
			return nil
		}
		d := b.names.Diagnose(missing[0])
		var queueStatus, logStatus string
		if err := tx.QueryRowxContext(ctx, d.SQL, args(d)...).Scan(&queueStatus, &logStatus); err != nil {
			return err
		}
		failure = pgschema.TransitionFailure(ev, missing[0], queueStatus, logStatus)
		return failure
	})
	if failure != nil && errors.Is(err, failure) {
		return failure
	}
	if err != nil {
		return b.fail(ev.String(), err)
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil and rolling
// back otherwise. (database/sql also rolls back by itself when ctx ends.)
func (b *Backend) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	tx, err := b.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			b.log.Warn("jobwatch/pq: rollback failed", "err", b.dsn.redactErr(rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
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
