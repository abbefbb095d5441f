package pgcore_test

import (
	"fmt"
	"testing"

	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// BenchmarkFeedRead measures one change feed read with nothing new, on a
// log of 10,000 rows: "vouched" when nothing waits on the sequence's lock
// holders (no listing), "listing" when the cursor waits on a transaction
// that holds it (pg_locks is read in the same statement), what each read
// costs while a gap or a fresh cursor waits.
//
//	go test -run '^$' -bench BenchmarkFeedRead ./backends/internal/pgcore/
func BenchmarkFeedRead(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the database")
	}
	for _, kind := range backendKinds {
		for _, listing := range []bool{false, true} {
			name := kind + "/vouched"
			if listing {
				name = kind + "/listing"
			}
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, kind, pgtest.DSN())
				if _, err := e.pool.Exec(e.ctx, fmt.Sprintf(`INSERT INTO %s (job_id, status, priority, entrypoint)
					SELECT g, 'queued', 0, 'e' FROM generate_series(1, 10000) AS g; ANALYZE %[1]s`, e.names.LogTable())); err != nil {
					b.Fatal(err)
				}
				if listing {
					x := e.begin()
					if _, err := x.tx.Exec(e.ctx, "SELECT nextval(pg_get_serial_sequence('"+e.names.LogTable()+"', 'id'))"); err != nil {
						b.Fatal(err)
					}
				}
				cs, err := e.b.Changes(e.ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, partial := pgcore.CursorGaps(cs.Cursor); partial != listing {
					b.Fatalf("cursor partial %v, want %v", partial, listing)
				}
				for b.Loop() {
					if _, err := e.b.Changes(e.ctx, cs.Cursor); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
