package pgschema

// The change feed reads the log table by its identity id. Ids are taken
// when a row is inserted but become visible only when its transaction
// commits, so they show up out of order; the holders of the id sequence's
// lock say which transactions may still commit one (see pgcore's cursor).

// holdersSQL lists, when $param is true, the virtual transaction ids of
// every other transaction holding a lock on the log id sequence, sorted
// and joined by commas ("" for none), and is NULL otherwise. pg_locks is
// readable by every role; scanning it is skipped when not asked for.
func (n Names) holdersSQL(param string) string {
	return `CASE WHEN ` + param + `::boolean THEN (
	SELECT coalesce(string_agg(DISTINCT lk.virtualtransaction, ',' ORDER BY lk.virtualtransaction), '')
	FROM pg_catalog.pg_locks AS lk
	WHERE lk.locktype = 'relation' AND lk.granted
	  AND lk.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())
	  AND lk.relation = pg_catalog.pg_get_serial_sequence(` + QuoteLiteral(n.qLog()) + `, 'id')::regclass
	  AND lk.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
) END`
}

// ChangesStartSQL starts a change feed: the highest log id visible in the
// statement's snapshot (0 when empty) and the holders (text, see
// ChangesSQL). No params.
func (n Names) ChangesStartSQL() string {
	return "SELECT (SELECT coalesce(max(id), 0) FROM " + n.qLog() + "), " + n.holdersSQL("true")
}

// ChangesSQL reads the log rows after $1 (the highest id seen) and those
// whose ids in $2 (bigint[]) were missing before, each with its job's
// current status (the newest log row, as FetchStatusesSQL has it), all in
// one snapshot. When $3 (boolean) is true every row also carries the
// holders: the virtual transaction ids (sorted, comma-separated, "" for
// none) of the other transactions holding a lock on the log id sequence,
// listed after the snapshot was taken; NULL otherwise. Columns: holders
// text, then log id, job_id bigint and status text, NULL when no row
// matched (there is always at least one row, for the holders).
func (n Names) ChangesSQL() string {
	return `WITH hold AS (
	SELECT ` + n.holdersSQL("$3") + ` AS holders
), changed AS (
	SELECT c.id, c.job_id, cur.status::text AS status
	FROM ` + n.qLog() + ` AS c
	CROSS JOIN LATERAL (
		SELECT l.status FROM ` + n.qLog() + ` AS l
		WHERE l.job_id = c.job_id ORDER BY l.created DESC, l.id DESC LIMIT 1
	) AS cur
	WHERE c.id > $1::bigint OR c.id = ANY($2::bigint[])
)
SELECT hold.holders, changed.id, changed.job_id, changed.status
FROM hold LEFT JOIN changed ON true
ORDER BY changed.id`
}
