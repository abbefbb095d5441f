package pgschema_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// TestReadPlansUseOnlyPgQueuersIndexes: the status read and the change
// feed's reads need no index beyond the ones PgQueuer creates. On an
// installation with a 60,000-row log (20,000 jobs, three rows each,
// analysed), EXPLAIN ANALYZE of each read uses the log's primary key and
// PgQueuer's (job_id, created DESC) index, and never scans the log
// sequentially; the status read does so under a custom plan (lib/pq's
// unnamed statements) and the generic one (pgx's prepared statements
// after five runs) alike. Run with -v to see the plans.
func TestReadPlansUseOnlyPgQueuersIndexes(t *testing.T) {
	t.Parallel()
	schema := pgtest.Schema(t)
	v := variants[2]
	b := openBackend(t, "pgx", v, schema)
	ctx := pgtest.Context(t)
	if _, err := b.Install(ctx); err != nil {
		t.Fatal(err)
	}
	n := names(t, v, schema)
	execSQL(t, `INSERT INTO `+n.LogTable()+` (created, job_id, status, priority, entrypoint)
		SELECT now() - (20000 - g) * interval '1 ms' + k * interval '1 s', g,
		       (ARRAY['queued', 'picked', 'successful'])[k + 1]::`+n.Qualify(n.StatusType)+`, 0, 'e'
		FROM generate_series(1, 20000) AS g, generate_series(0, 2) AS k;
		ANALYZE `+n.LogTable())
	known := map[string]bool{n.Log + "_pkey": true}
	for _, ix := range n.Indexes() {
		known[ix.Name] = true
	}
	ids := make([]int64, 1000)
	for i := range ids {
		ids[i] = int64(1 + i*19)
	}
	conn := pgtest.Connect(t)
	scan := regexp.MustCompile(`(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)`)
	check := func(name, text string, uses []string) {
		t.Helper()
		t.Logf("%s:\n%s", name, text)
		used := map[string]bool{}
		for _, m := range scan.FindAllStringSubmatch(text, -1) {
			used[m[1]] = true
			if !known[m[1]] {
				t.Errorf("%s uses index %s, which PgQueuer does not create", name, m[1])
			}
		}
		for _, want := range uses {
			if !used[want] {
				t.Errorf("%s does not use %s", name, want)
			}
		}
		if strings.Contains(text, "Seq Scan on "+n.Log) {
			t.Errorf("%s scans the log sequentially", name)
		}
	}
	// The status read's plan must not depend on how the driver sends it:
	// lib/pq's unnamed statements are planned for each call's array (a
	// custom plan), pgx's prepared ones may get the generic plan.
	if _, err := conn.Exec(ctx, "PREPARE status_read(bigint[]) AS "+n.FetchStatusesSQL()+
		"; PREPARE status_read_one(bigint) AS "+n.FetchStatusSQL()); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			ids  []int64
		}{{"one id", []int64{777}}, {"1,000 ids", ids}} {
			lit := strings.Trim(strings.ReplaceAll(fmt.Sprint(c.ids), " ", ","), "[]")
			text := explain(t, conn, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE status_read('{"+lit+"}')")
			check("status read of "+c.name+", "+mode, text, []string{n.IdxLogJob})
		}
		text := explain(t, conn, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE status_read_one(777)")
		check("status read of one id alone, "+mode, text, []string{n.IdxLogJob})
	}
	if _, err := conn.Exec(ctx, "RESET plan_cache_mode; DEALLOCATE status_read; DEALLOCATE status_read_one"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, sql string
		args      []any
		uses      []string
	}{
		{"status read of 1,000 ids", n.FetchStatusesSQL(), []any{ids}, []string{n.IdxLogJob}},
		{"status read of one id", n.FetchStatusesSQL(), []any{[]int64{777}}, []string{n.IdxLogJob}},
		{"status read of one id alone", n.FetchStatusSQL(), []any{int64(777)}, []string{n.IdxLogJob}},
		{"change feed start", n.ChangesStartSQL(), nil, []string{n.Log + "_pkey"}},
		{"change feed, the last 100 rows", n.ChangesSQL(), []any{int64(59900), []int64{}, false}, []string{n.Log + "_pkey", n.IdxLogJob}},
		{"change feed, 100 rows and 3 gaps", n.ChangesSQL(), []any{int64(59900), []int64{7, 30000, 59000}, true}, []string{n.Log + "_pkey", n.IdxLogJob}},
	} {
		check(c.name, explain(t, conn, "EXPLAIN (ANALYZE, COSTS OFF) "+c.sql, c.args...), c.uses)
	}
}

// explain runs an EXPLAIN and returns its plan's text.
func explain(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(plan, "\n")
}
