package pgschema

import (
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The statements of queue.Queue beyond the transitions: what holds a dedupe
// key, heartbeats, and reading one job back.

// DedupeHolders reads which jobs hold keys now: one row per key held by a
// queued or picked job (the rows the dedupe index covers), dedupe_key text
// and id bigint. Run it after a dedupe violation, outside the failed
// transaction.
func (n Names) DedupeHolders(keys []string) Stmt {
	return Stmt{SQL: `SELECT dedupe_key, id::bigint FROM ` + n.qQueue() + `
WHERE dedupe_key = ANY($1::text[]) AND status IN ('queued', 'picked')`, Args: []any{append([]string(nil), keys...)}}
}

// HoldersOf reads the jobs of ids that have a dedupe key, with their status
// and the other queued or picked job holding the same key (0 when none):
// rows id bigint, dedupe_key text, status text, holder bigint. A requeue
// that broke the dedupe index runs it to name the holder.
func (n Names) HoldersOf(ids []int64) Stmt {
	return Stmt{SQL: `SELECT r.id::bigint, r.dedupe_key, r.status::text, COALESCE(h.id, 0)::bigint
FROM ` + n.qQueue() + ` AS r LEFT JOIN ` + n.qQueue() + ` AS h
  ON h.dedupe_key = r.dedupe_key AND h.id <> r.id AND h.status IN ('queued', 'picked')
WHERE r.id = ANY($1::bigint[]) AND r.dedupe_key IS NOT NULL`, Args: []any{append([]int64(nil), ids...)}}
}

// Heartbeat builds the statement that sets the heartbeat of the picked jobs
// of ids to now, as PgQueuer's does (nothing else changes and nothing is
// logged), locking them in id order as Transition does so that the two
// never deadlock. It returns the ids it updated (bigint); an id missing
// from the result was not picked (see Diagnose).
func (n Names) Heartbeat(ids []int64) Stmt {
	return Stmt{SQL: `WITH target AS (
    SELECT id FROM ` + n.qQueue() + `
    WHERE id = ANY($1::bigint[]) AND status = 'picked'
    ORDER BY id
    FOR UPDATE
)
UPDATE ` + n.qQueue() + ` AS q SET heartbeat = NOW()
FROM target WHERE q.id = target.id
RETURNING q.id::bigint`, Args: []any{append([]int64(nil), ids...)}}
}

// HeartbeatFailure is the error for a job a Heartbeat left untouched, given
// Diagnose's row (see TransitionFailure): a *queue.NotPickedError with the
// job's current state (None when the job is unknown).
func HeartbeatFailure(id int64, queueStatus, logStatus string) error {
	cur := queueStatus
	if cur == "" {
		cur = logStatus
	}
	if cur == "" {
		return &queue.NotPickedError{ID: jobwatch.JobID(id)}
	}
	st, err := statemachine.ParseState(cur)
	if err != nil {
		return fmt.Errorf("%w: job %d: %w", queue.ErrNotPicked, id, err)
	}
	return &queue.NotPickedError{ID: jobwatch.JobID(id), State: st}
}

// InspectTxSQL starts the transaction of an inspection, so that the queue
// row and the log are read from one snapshot. It must be the transaction's
// first statement.
const InspectTxSQL = `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`

// InspectJob reads job id's queue row (JobColumns, ScanJob); none once the
// job has ended.
func (n Names) InspectJob(id int64) Stmt {
	return Stmt{SQL: `SELECT ` + JobColumns + ` FROM ` + n.qQueue() + ` WHERE id = $1::bigint`, Args: []any{id}}
}

// InspectLog reads job id's newest log rows, newest first, at most limit
// (LogColumns, ScanTransition). One index range scan on (job_id, created
// DESC).
func (n Names) InspectLog(id int64, limit int) Stmt {
	return Stmt{SQL: `SELECT ` + LogColumns + ` FROM ` + n.qLog() + `
WHERE job_id = $1::bigint ORDER BY created DESC, id DESC LIMIT $2::int`, Args: []any{id, int64(limit)}}
}

// LogColumns are the log-table columns a Transition is scanned from, in
// ScanTransition's order.
const LogColumns = `status::text, created, entrypoint, priority::bigint, COALESCE(traceback::text, '')`

// ScanTransition scans one row of LogColumns.
func ScanTransition(scan func(dest ...any) error) (queue.Transition, error) {
	var (
		status, entry, tb string
		created           time.Time
		prio              int64
	)
	if err := scan(&status, &created, &entry, &prio, &tb); err != nil {
		return queue.Transition{}, err
	}
	st, err := statemachine.ParseState(status)
	if err != nil {
		return queue.Transition{}, err
	}
	return queue.Transition{State: st, At: created, Entrypoint: entry, Priority: int(prio),
		Traceback: queue.ParseTraceback([]byte(tb))}, nil
}
