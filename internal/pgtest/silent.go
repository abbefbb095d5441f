package pgtest

// SilentHoldSQL holds picked jobs without a notification: the queue rows
// become failed and each gets its log row, in one statement that is a
// plain UPDATE of the queue table (queue and log are its quoted, qualified
// tables). PgQueuer's trigger, and jobwatch's, send nothing for an UPDATE,
// so this is what a worker holding jobs with such a statement commits.
// The conformance harnesses of the PostgreSQL backends use it for
// conformance.SilentHolder. Params: $1 bigint[] ids; one row per held
// job.
func SilentHoldSQL(queue, log string) string {
	return `WITH held AS (
    UPDATE ` + queue + ` SET status = 'failed', updated = NOW(), queue_manager_id = NULL
    WHERE id = ANY($1::bigint[]) AND status = 'picked'
    RETURNING id, entrypoint, priority
)
INSERT INTO ` + log + ` (job_id, status, entrypoint, priority)
SELECT id, 'failed', entrypoint, priority FROM held`
}
