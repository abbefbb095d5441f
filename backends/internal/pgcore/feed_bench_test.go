package pgcore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// BenchmarkFeedRead measures one change feed read with nothing new, on a
// log of 10,000 rows, from two cursors read in turn: "vouched" waits on
// nothing, so its read lists no lock holders; "listing" waits on a
// transaction that holds the log id sequence's lock, so its read also
// reads pg_locks, as every read does while a gap or a fresh cursor waits.
// Each reports its own <cursor>-ns/read.
//
//	go test -run '^$' -bench BenchmarkFeedRead -count 3 ./backends/internal/pgcore/
func BenchmarkFeedRead(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the database")
	}
	for _, kind := range backendKinds {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, kind, pgtest.DSN())
			if _, err := e.pool.Exec(e.ctx, fmt.Sprintf(`INSERT INTO %s (job_id, status, priority, entrypoint)
				SELECT g, 'queued', 0, 'e' FROM generate_series(1, 10000) AS g; ANALYZE %[1]s`, e.names.LogTable())); err != nil {
				b.Fatal(err)
			}
			start := func(wantPartial bool) jobwatch.Cursor {
				cs, err := e.b.Changes(e.ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, partial := pgcore.CursorGaps(cs.Cursor); partial != wantPartial {
					b.Fatalf("cursor partial %v, want %v", partial, wantPartial)
				}
				return cs.Cursor
			}
			vouched := start(false)
			x := e.begin()
			if _, err := x.tx.Exec(e.ctx, "SELECT nextval(pg_get_serial_sequence('"+e.names.LogTable()+"', 'id'))"); err != nil {
				b.Fatal(err)
			}
			listing := start(true)
			var spent [2]time.Duration
			reads := 0
			for b.Loop() {
				for k := range 2 {
					i := (k + reads) % 2
					cur := [2]jobwatch.Cursor{vouched, listing}[i]
					t0 := time.Now()
					if _, err := e.b.Changes(e.ctx, cur); err != nil {
						b.Fatal(err)
					}
					spent[i] += time.Since(t0)
				}
				reads++
			}
			b.ReportMetric(float64(spent[0].Nanoseconds())/float64(reads), "vouched-ns/read")
			b.ReportMetric(float64(spent[1].Nanoseconds())/float64(reads), "listing-ns/read")
		})
	}
}
