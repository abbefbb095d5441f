package pgschema

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Stmt is one SQL statement with its arguments in order. Array arguments
// are Go slices ([]int64, []string, [][]byte); pgx sends them as they are,
// database/sql with lib/pq needs each wrapped with pq.Array.
type Stmt struct {
	SQL  string
	Args []any
}

// JobIDs validates ids for a write or a read: at least one, every one
// positive. It returns them deduplicated, in first-seen order, as int64. A
// bad list returns an error matching jobwatch.ErrInvalidID.
func JobIDs(ids []jobwatch.JobID) ([]int64, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: empty id list", jobwatch.ErrInvalidID)
	}
	out := make([]int64, 0, len(ids))
	seen := make(map[jobwatch.JobID]struct{}, len(ids))
	for _, id := range ids {
		if id <= 0 {
			return nil, fmt.Errorf("%w: %d (ids are positive)", jobwatch.ErrInvalidID, int64(id))
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, int64(id))
	}
	return out, nil
}

// FetchStatusesSQL reads the current status of each id: the status of its
// newest log row (created DESC, id DESC); ids without a log row are absent.
// One row per known id: job_id bigint, status text. Params: $1 bigint[].
//
// Each id is one index lookup (job_id, created DESC), whatever the size of
// the array or of the log: a set-based form (PgQueuer's DISTINCT ON over
// job_id = ANY($1), or a join with unnest) lets the planner pick a
// parallel or hashed scan of the whole log for a large array, which
// lib/pq's unprepared statements hit on every call. The ids go in
// ascending order, so consecutive lookups walk the index in order and
// share its pages: about a third cheaper per id at 5,000 ids than in hash
// order (docs/PERFORMANCE.md, "The status read by id").
func (n Names) FetchStatusesSQL() string {
	return "SELECT i.id, cur.status::text FROM (SELECT DISTINCT u.id FROM unnest($1::bigint[]) AS u(id) ORDER BY u.id) AS i " +
		"CROSS JOIN LATERAL (SELECT l.status FROM " + n.qLog() +
		" AS l WHERE l.job_id = i.id ORDER BY l.created DESC, l.id DESC LIMIT 1) AS cur"
}

// FetchStatusSQL is FetchStatusesSQL for one id, $1 (bigint): the same
// row, or none. A single id is the common read (one Wait), and this form
// is planned and run in about half the server time of the array form,
// which lib/pq pays on every call (docs/PERFORMANCE.md).
func (n Names) FetchStatusSQL() string {
	return "SELECT l.job_id, l.status::text FROM " + n.qLog() +
		" AS l WHERE l.job_id = $1::bigint ORDER BY l.created DESC, l.id DESC LIMIT 1"
}

// ParseStatus converts one FetchStatusesSQL or FetchStatusSQL row.
func ParseStatus(id int64, status string) (jobwatch.Status, error) {
	st, err := statemachine.ParseState(status)
	if err != nil {
		return jobwatch.Status{}, fmt.Errorf("jobwatch: job %d: %w", id, err)
	}
	return jobwatch.Status{ID: jobwatch.JobID(id), State: st}, nil
}

// Enqueue builds the statement that inserts jobs, in the given order, with
// their "queued" log rows, and returns one row per job, its id (bigint), in
// input order. The ids are drawn from the queue table's id sequence before
// the insert and tied to each input's ordinal, so the order does not depend
// on the executor. A dedupe conflict fails the whole statement (see
// IsDedupeViolation and DedupeHolders). Jobs that queue.CheckJobs refuses
// return its error.
func (n Names) Enqueue(jobs []queue.NewJob) (Stmt, error) {
	if err := queue.CheckJobs(jobs); err != nil {
		return Stmt{}, err
	}
	prio := make([]int64, len(jobs))
	entry := make([]string, len(jobs))
	payload := make([][]byte, len(jobs))
	delay := make([]int64, len(jobs))
	dedupe := make([]string, len(jobs))
	headers := make([]string, len(jobs))
	for i, j := range jobs {
		h, _ := j.HeadersJSON() // CheckJobs encoded them already
		headers[i] = string(h)
		prio[i] = int64(j.Priority)
		entry[i] = j.Entrypoint
		payload[i] = j.Payload
		if payload[i] == nil {
			payload[i] = []byte{} // NULL elements are not portable; '' maps to NULL in SQL
		}
		delay[i] = j.ExecuteAfter.Microseconds()
		dedupe[i] = j.DedupeKey
	}
	return Stmt{SQL: n.enqueueSQL(), Args: []any{prio, entry, payload, delay, dedupe, headers}}, nil
}

// enqueueSQL params: $1 int[] priority, $2 text[] entrypoint, $3 bytea[]
// payload (” = NULL), $4 bigint[] delay in microseconds, $5 text[] dedupe
// key (” = NULL), $6 text[] headers JSON (” = NULL).
func (n Names) enqueueSQL() string {
	return `WITH input AS (
    SELECT nextval(pg_get_serial_sequence(` + QuoteLiteral(n.qQueue()) + `, 'id')) AS id, t.*
    FROM unnest($1::int[], $2::text[], $3::bytea[], $4::bigint[], $5::text[], $6::text[])
         WITH ORDINALITY AS t(priority, entrypoint, payload, delay_us, dedupe_key, headers, ord)
), inserted AS (
    INSERT INTO ` + n.qQueue() + ` (id, priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
    SELECT id, priority, entrypoint, NULLIF(payload, ''::bytea), NOW() + delay_us * INTERVAL '1 microsecond',
           NULLIF(dedupe_key, ''), NULLIF(headers, '')::jsonb, 'queued'
    FROM input ORDER BY ord
    RETURNING id, entrypoint, priority
), logged AS (
    INSERT INTO ` + n.qLog() + ` (created, job_id, status, entrypoint, priority)
    SELECT clock_timestamp(), id, 'queued', entrypoint, priority FROM inserted
)
SELECT id::bigint FROM input ORDER BY ord`
}

// IsDedupeViolation reports whether a failed statement broke the dedupe
// index: SQLSTATE 23505 (unique_violation) on IdxDedupe. Backends pass the
// code and constraint name of their driver's error type.
func (n Names) IsDedupeViolation(sqlstate, constraint string) bool {
	return sqlstate == "23505" && constraint == n.IdxDedupe
}

// ClaimSelect builds the first statement of a claim: it locks the jobs to
// claim (FOR UPDATE SKIP LOCKED, so concurrent claimers never get the same
// job and never wait for each other) and returns their ids (bigint). When it
// returns none, the claim is over and nothing is written (and no NOTIFY is
// sent, which a single UPDATE statement would do even for zero rows: the
// trigger is statement-level). Otherwise run ClaimUpdate with the ids in
// the same transaction.
func (n Names) ClaimSelect(req queue.ClaimRequest) (Stmt, error) {
	if err := req.Validate(); err != nil {
		return Stmt{}, err
	}
	sql := `SELECT id::bigint FROM ` + n.qQueue() + `
WHERE entrypoint = ANY($1::text[]) AND status = 'queued' AND execute_after <= NOW()
ORDER BY priority DESC, id ASC
LIMIT $2::int
FOR UPDATE SKIP LOCKED`
	return Stmt{SQL: sql, Args: []any{append([]string(nil), req.Entrypoints...), int64(req.Limit)}}, nil
}

// ClaimUpdate builds the second statement of a claim: it marks the locked
// ids picked (heartbeat and updated now, queue_manager_id set), logs
// "picked" for each, and returns the claimed jobs (JobColumns, ScanJob)
// highest priority first, then oldest id.
func (n Names) ClaimUpdate(ids []int64, queueManagerID [16]byte) Stmt {
	qm := ""
	if queueManagerID != ([16]byte{}) {
		qm = FormatUUID(queueManagerID)
	}
	sql := `WITH claimed AS (
    UPDATE ` + n.qQueue() + `
    SET status = 'picked', updated = NOW(), heartbeat = NOW(), queue_manager_id = NULLIF($2::text, '')::uuid
    WHERE id = ANY($1::bigint[]) AND status = 'queued'
    RETURNING *
), logged AS (
    INSERT INTO ` + n.qLog() + ` (created, job_id, status, entrypoint, priority)
    SELECT clock_timestamp(), id, 'picked', entrypoint, priority FROM claimed
)
SELECT ` + JobColumns + ` FROM claimed ORDER BY priority DESC, id ASC`
	return Stmt{SQL: sql, Args: []any{append([]int64(nil), ids...), qm}}
}

// JobColumns are the queue-table columns a Job is scanned from, in
// ScanJob's order, cast so that both drivers scan them into plain Go types.
const JobColumns = `id::bigint, priority::bigint, entrypoint, payload, COALESCE(headers::text, ''), status::text, ` +
	`attempts::bigint, COALESCE(dedupe_key, ''), COALESCE(queue_manager_id::text, ''), ` +
	`created, updated, heartbeat, execute_after`

// ScanJob scans one row of JobColumns with a driver's Scan method
// (pgx.Rows.Scan and (*sql.Rows).Scan have the same signature).
func ScanJob(scan func(dest ...any) error) (queue.Job, error) {
	var (
		j                      queue.Job
		id, prio, attempts     int64
		headers, status, qm    string
		payload                []byte
		created, upd, hb, exec time.Time
	)
	if err := scan(&id, &prio, &j.Entrypoint, &payload, &headers, &status, &attempts, &j.DedupeKey, &qm,
		&created, &upd, &hb, &exec); err != nil {
		return queue.Job{}, err
	}
	st, err := statemachine.ParseState(status)
	if err != nil {
		return queue.Job{}, fmt.Errorf("jobwatch: job %d: %w", id, err)
	}
	if qm != "" {
		if j.QueueManagerID, err = ParseUUID(qm); err != nil {
			return queue.Job{}, fmt.Errorf("jobwatch: job %d: queue_manager_id: %w", id, err)
		}
	}
	if headers != "" {
		j.Headers = json.RawMessage(headers)
	}
	if payload != nil {
		j.Payload = append([]byte(nil), payload...) // pgx may reuse its buffer
	}
	j.ID, j.Priority, j.Status, j.Attempts = jobwatch.JobID(id), int(prio), st, int(attempts)
	j.Created, j.Updated, j.Heartbeat, j.ExecuteAfter = created, upd, hb, exec
	return j, nil
}

// FormatUUID formats u in the canonical 8-4-4-4-12 form.
func FormatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// ParseUUID parses the canonical form PostgreSQL prints.
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return u, fmt.Errorf("malformed uuid %q", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("malformed uuid %q: %v", s, err)
	}
	return u, nil
}

// Transition builds the statement applying ev to ids (validated and
// deduplicated with JobIDs first) in one statement:
//
//   - it locks, in id order, the queue rows of ids whose status is one of
//     statemachine.Sources(ev) (so a concurrent change that makes the
//     transition illegal leaves the row out);
//   - a terminal event (complete, error, cancel, delete) deletes them; a
//     non-terminal one (claim, hold, retry, requeue) updates them;
//   - it inserts one log row per changed job with the new status (and, for
//     error, the traceback), and returns its job_id (bigint);
//   - a hold also sends the trigger's table_changed_event itself (the
//     trigger, like PgQueuer's, is silent on UPDATE), delivered when the
//     transaction commits.
//
// The caller compares the returned ids with ids: any id missing means the
// transition was illegal for it, so it reads that job with Diagnose,
// rolls the whole transaction back and returns TransitionFailure's error.
//
// traceback is used by statemachine.Error only: JSON text stored in the log
// row's traceback (empty: NULL). Enqueue is not a transition here (see
// Enqueue); it and invalid events return an error matching
// statemachine.ErrUnknownEvent or ErrIllegalTransition.
func (n Names) Transition(ev statemachine.Event, ids []int64, traceback string) (Stmt, error) {
	to, sources, err := transitionOf(ev)
	if err != nil {
		return Stmt{}, err
	}
	if len(ids) == 0 {
		return Stmt{}, fmt.Errorf("%w: empty id list", jobwatch.ErrInvalidID)
	}
	quoted := make([]string, len(sources))
	for i, s := range sources {
		quoted[i] = QuoteLiteral(s.String())
	}
	var change string
	if to.Terminal() {
		change = `DELETE FROM ` + n.qQueue() + ` AS q USING target
    WHERE q.id = target.id
    RETURNING q.id, q.entrypoint, q.priority`
	} else {
		var set string
		switch ev {
		case statemachine.Claim:
			set = `status = 'picked', updated = NOW(), heartbeat = NOW(), queue_manager_id = NULL`
		case statemachine.Hold:
			set = `status = 'failed', updated = NOW(), queue_manager_id = NULL`
		case statemachine.Retry:
			set = `status = 'queued', updated = NOW(), execute_after = NOW(), attempts = q.attempts + 1, queue_manager_id = NULL`
		case statemachine.Requeue:
			set = `status = 'queued', updated = NOW(), execute_after = NOW(), attempts = 0, queue_manager_id = NULL`
		default:
			return Stmt{}, fmt.Errorf("pgschema: no update for event %s", ev)
		}
		change = `UPDATE ` + n.qQueue() + ` AS q SET ` + set + `
    FROM target
    WHERE q.id = target.id
    RETURNING q.id, q.entrypoint, q.priority`
	}
	tb := "NULL::jsonb"
	args := []any{append([]int64(nil), ids...)}
	if ev == statemachine.Error {
		tb = "NULLIF($2::text, '')::jsonb"
		args = append(args, traceback)
	}
	// The trigger is silent on UPDATE (as PgQueuer's is), but a hold is
	// final for a watcher that settles on hold: announce it explicitly, in
	// the same transaction, with the trigger's payload. Joining the CTE
	// makes it run; an all-or-nothing Apply commits it only when every job
	// changed.
	notify, from := "", "changed"
	if ev == statemachine.Hold {
		notify = `, notified AS (
    SELECT pg_notify(` + QuoteLiteral(n.Channel) + `, ` + n.changedEvent("'update'", QuoteLiteral(n.Queue)) + `)
)`
		from = "changed CROSS JOIN notified"
	}
	sql := `WITH target AS (
    SELECT id FROM ` + n.qQueue() + `
    WHERE id = ANY($1::bigint[]) AND status IN (` + strings.Join(quoted, ", ") + `)
    ORDER BY id
    FOR UPDATE
), changed AS (
    ` + change + `
)` + notify + `
INSERT INTO ` + n.qLog() + ` (created, job_id, status, entrypoint, priority, traceback)
SELECT clock_timestamp(), id, ` + QuoteLiteral(to.String()) + `, entrypoint, priority, ` + tb + ` FROM ` + from + `
RETURNING job_id::bigint`
	return Stmt{SQL: sql, Args: args}, nil
}

// transitionOf returns the target state and the legal source states of a
// transition event.
func transitionOf(ev statemachine.Event) (statemachine.State, []statemachine.State, error) {
	if !ev.Valid() {
		return 0, nil, &statemachine.TransitionError{Event: ev}
	}
	if ev == statemachine.Enqueue {
		return 0, nil, fmt.Errorf("pgschema: enqueue is not a transition of existing jobs: %w",
			&statemachine.TransitionError{From: statemachine.Queued, Event: ev})
	}
	sources := statemachine.Sources(ev)
	var to statemachine.State
	for i, s := range sources {
		t, err := statemachine.Transition(s, ev)
		if err != nil {
			return 0, nil, err
		}
		if i > 0 && t != to {
			// One statement writes one status; the table has no such event.
			return 0, nil, fmt.Errorf("pgschema: event %s leads to several states", ev)
		}
		to = t
	}
	if len(sources) == 0 || !to.Valid() {
		return 0, nil, &statemachine.TransitionError{Event: ev}
	}
	return to, sources, nil
}

// Missing returns the ids (in order) that are not in done: the ones a
// Transition left untouched.
func Missing(ids, done []int64) []int64 {
	got := make(map[int64]struct{}, len(done))
	for _, id := range done {
		got[id] = struct{}{}
	}
	var out []int64
	for _, id := range ids {
		if _, ok := got[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// Diagnose reads why a transition left a job untouched: its queue row's
// status and its newest log row's status, each "" when absent. Run it in
// the failed transaction, before rolling back, for a missing id (an id the
// transaction did not change, so it reads the committed state). One row:
// two text columns. Params: $1 bigint.
func (n Names) Diagnose(id int64) Stmt {
	return Stmt{SQL: `SELECT COALESCE((SELECT status::text FROM ` + n.qQueue() + ` WHERE id = $1::bigint), ''),
       COALESCE((SELECT status::text FROM ` + n.qLog() + ` WHERE job_id = $1::bigint
                 ORDER BY created DESC, id DESC LIMIT 1), '')`, Args: []any{id}}
}

// TransitionFailure is the error for a job a Transition left untouched,
// given Diagnose's row. The job's current status is its queue row's, else
// its newest log row's; with neither, the error matches ErrUnknownJob.
// Every result is (or wraps) a *statemachine.TransitionError with ID set,
// matching statemachine.ErrIllegalTransition.
func TransitionFailure(ev statemachine.Event, id int64, queueStatus, logStatus string) error {
	cur := queueStatus
	if cur == "" {
		cur = logStatus
	}
	if cur == "" {
		return queue.UnknownJobError(ev, jobwatch.JobID(id))
	}
	te := &statemachine.TransitionError{ID: id, Event: ev}
	st, err := statemachine.ParseState(cur)
	if err != nil {
		return fmt.Errorf("jobwatch: job %d: %w (and the transition failed: %w)", id, err, te)
	}
	te.From = st
	if statemachine.Legal(st, ev) {
		// The row was in another state when the transition ran and was
		// changed back before Diagnose read it.
		return fmt.Errorf("%w (the job changed concurrently; now %s)", te, st)
	}
	return te
}
