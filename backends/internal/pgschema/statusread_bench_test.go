package pgschema_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// statusReads are the candidate forms of the by-id status read, each
// returning job_id and status text for the ids in $1 (bigint[]), the
// newest log row of each (created DESC, id DESC). "lateral-sorted" is
// FetchStatusesSQL; "single" is FetchStatusSQL, which takes one id ($1
// bigint) and is what FetchStatuses sends for one; "lateral" was the read
// before; "distinct-on" is PgQueuer's.
func statusReads(n pgschema.Names) []struct{ name, sql string } {
	log := n.LogTable()
	return []struct{ name, sql string }{
		{"single", n.FetchStatusSQL()},
		{"lateral", "SELECT i.id, cur.status::text FROM (SELECT DISTINCT unnest($1::bigint[]) AS id) AS i " +
			"CROSS JOIN LATERAL (SELECT l.status FROM " + log +
			" AS l WHERE l.job_id = i.id ORDER BY l.created DESC, l.id DESC LIMIT 1) AS cur"},
		{"distinct-on", "SELECT DISTINCT ON (job_id) job_id, status::text FROM " + log +
			" WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, created DESC, id DESC"},
		{"unnest-join", "SELECT DISTINCT ON (l.job_id) l.job_id, l.status::text FROM unnest($1::bigint[]) AS i(id) JOIN " + log +
			" AS l ON l.job_id = i.id ORDER BY l.job_id, l.created DESC, l.id DESC"},
		{"lateral-sorted", n.FetchStatusesSQL()},
	}
}

// benchJobs and benchRows size the benchmark's log: three rows a job
// (queued, picked, a final status), a million rows.
const (
	benchJobs = 333_334
	benchRows = 3 * benchJobs
)

// BenchmarkStatusRead measures each candidate status read per id, at 1,
// 100 and 5,000 distinct ids drawn at random, on a log of a million rows
// (built once in a schema of its own, analysed, dropped at the end),
// through pgx (prepared once, so the server may switch to a generic plan)
// and lib/pq (unnamed statements, planned for each call's array). Each
// iteration runs every candidate once, in rotating order, on the same
// ids, and each reports its own <candidate>-ns/id: on a shared machine a
// comparison between separate benchmarks measures the load as much as
// the query. Skipped with -short or without a database.
//
//	go test -run '^$' -bench BenchmarkStatusRead -count 3 ./backends/internal/pgschema/
func BenchmarkStatusRead(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a million-row log")
	}
	ctx := context.Background()
	probe, err := pgx.Connect(ctx, pgtest.DSN())
	if err != nil {
		b.Skipf("no test database: %v", err)
	}
	_ = probe.Close(ctx)
	schema := pgtest.Schema(b)
	n, err := pgschema.NewNames("", schema)
	if err != nil {
		b.Fatal(err)
	}
	conn := pgtest.Connect(b)
	start := time.Now()
	if _, err := conn.Exec(ctx, n.InstallSQL()); err != nil {
		b.Fatal(err)
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (created, job_id, status, priority, entrypoint)
		SELECT now() - interval '1 day' + g * interval '1 ms' + k * interval '1 s', g,
		       (ARRAY['queued', 'picked', 'successful'])[k + 1]::%s, 0, 'e'
		FROM generate_series(1, %d) AS g, generate_series(0, 2) AS k;
		ANALYZE %s`, n.LogTable(), n.Qualify(n.StatusType), benchJobs, n.LogTable()))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("log of %d rows built in %s", benchRows, time.Since(start).Round(time.Millisecond))
	db, err := sql.Open("postgres", pgtest.DSN())
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { _ = db.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 100, 5000} {
		for _, drv := range []string{"pgx", "pq"} {
			b.Run(fmt.Sprintf("ids=%d/%s", size, drv), func(b *testing.B) {
				sets := make([][]int64, 64)
				for i := range sets {
					sets[i] = randomIDs(r, size)
				}
				var reads []statusRead
				for _, q := range statusReads(n) {
					if q.name != "single" || size == 1 {
						reads = append(reads, statusRead{name: q.name, sql: q.sql, one: q.name == "single"})
					}
				}
				read := func(q *statusRead, ids []int64) {
					start := time.Now()
					if got := q.run(b, ctx, conn, db, drv, ids); got != size {
						b.Fatalf("%s: %d rows for %d ids", q.name, got, size)
					}
					q.spent += time.Since(start)
				}
				for i := range 8 { // past the plan cache's five custom plans
					for k := range reads {
						read(&reads[k], sets[i])
					}
				}
				for k := range reads {
					reads[k].spent = 0
				}
				calls := 0
				for b.Loop() {
					// Every candidate in turn on the same ids, so that the
					// load of a shared machine falls on all of them alike.
					for k := range reads {
						read(&reads[(k+calls)%len(reads)], sets[calls%len(sets)])
					}
					calls++
				}
				for _, q := range reads {
					b.ReportMetric(float64(q.spent.Nanoseconds())/float64(calls)/float64(size), q.name+"-ns/id")
				}
			})
		}
	}
}

// statusRead is one candidate and the time spent in it.
type statusRead struct {
	name, sql string
	one       bool // takes ids[0] as a bigint
	spent     time.Duration
}

// run reads ids with q through drv and returns the number of rows.
func (q *statusRead) run(b *testing.B, ctx context.Context, conn *pgx.Conn, db *sql.DB, drv string, ids []int64) int {
	var arg any = ids
	switch {
	case q.one:
		arg = ids[0]
	case drv == "pq":
		arg = libpq.Array(ids)
	}
	var rows interface {
		Next() bool
		Err() error
	}
	if drv == "pgx" {
		rs, err := conn.Query(ctx, q.sql, arg)
		if err != nil {
			b.Fatal(err)
		}
		defer rs.Close()
		rows = rs
	} else {
		rs, err := db.QueryContext(ctx, q.sql, arg)
		if err != nil {
			b.Fatal(err)
		}
		defer rs.Close()
		rows = rs
	}
	got := 0
	for rows.Next() {
		got++
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return got
}

// randomIDs returns size distinct job ids of the benchmark's log.
func randomIDs(r *rand.Rand, size int) []int64 {
	seen := make(map[int64]bool, size)
	out := make([]int64, 0, size)
	for len(out) < size {
		id := 1 + r.Int64N(benchJobs)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
