package pgschema

// The change feed reads the log table by its identity id. Ids are taken
// when a row is inserted but become visible only when its transaction
// commits, so they show up out of order; the snapshot's xmin and xmax say
// which transactions may still commit (see pgcore's cursor).

// ChangesStartSQL starts a change feed: the statement's snapshot (xmin,
// xmax as bigint) and the highest log id visible in it (0 when empty).
// No params.
func (n Names) ChangesStartSQL() string {
	return "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, " +
		"(SELECT coalesce(max(id), 0) FROM " + n.qLog() + ") FROM pg_current_snapshot() AS s"
}

// ChangesSQL reads the log rows after $1 (the highest id seen) and those
// whose ids in $2 (bigint[]) were missing before, each with its job's
// current status (the newest log row, as FetchStatusesSQL has it), all in
// one snapshot, whose xmin and xmax every row carries. Columns: xmin, xmax
// bigint, then log id, job_id bigint and status text, NULL when no row
// matched (there is always at least one row, for the snapshot).
func (n Names) ChangesSQL() string {
	return `WITH snap AS (
	SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, pg_snapshot_xmax(s)::text::bigint AS xmax
	FROM pg_current_snapshot() AS s
), changed AS (
	SELECT c.id, c.job_id, cur.status::text AS status
	FROM ` + n.qLog() + ` AS c
	CROSS JOIN LATERAL (
		SELECT l.status FROM ` + n.qLog() + ` AS l
		WHERE l.job_id = c.job_id ORDER BY l.created DESC, l.id DESC LIMIT 1
	) AS cur
	WHERE c.id > $1::bigint OR c.id = ANY($2::bigint[])
)
SELECT snap.xmin, snap.xmax, changed.id, changed.job_id, changed.status
FROM snap LEFT JOIN changed ON true
ORDER BY changed.id`
}
