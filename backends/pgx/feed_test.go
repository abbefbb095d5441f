package pgx_test

import (
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/statemachine"
)

// A rolled-back transaction leaves a hole in the log ids; the feed asks for
// it again until no transaction that could fill it is running, then lets
// it go, so gaps do not pile up.
func TestChangeFeedRetiresRolledBackGaps(t *testing.T) {
	e := newEnv(t)
	ids := e.enqueue(2)
	cs, err := e.b.Changes(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := harness{e: e}
	end, err := h.ApplyOpen(e.ctx, statemachine.Claim, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Apply(e.ctx, statemachine.Claim, ids[1]); err != nil {
		t.Fatal(err)
	}
	cur := cs.Cursor
	read := func() []jobwatch.Status {
		t.Helper()
		cs, err := e.b.Changes(e.ctx, cur)
		if err != nil {
			t.Fatal(err)
		}
		cur = cs.Cursor
		return cs.Statuses
	}
	if got := read(); len(got) != 1 || got[0].ID != ids[1] {
		t.Fatalf("changes = %v, want only job %d", got, ids[1])
	}
	if gaps, _ := pgcore.CursorGaps(cur); gaps != 1 {
		t.Fatalf("%d gaps with one transaction open, want 1", gaps)
	}
	if err := end(e.ctx, false); err != nil {
		t.Fatal(err)
	}
	// It takes at least one more read (which lists no holder of the
	// sequence's lock) and one after it (which retires the gap).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for reads := 1; ; reads++ {
		if got := read(); len(got) != 0 {
			t.Fatalf("read %d after the rollback returned %v", reads, got)
		}
		gaps, _ := pgcore.CursorGaps(cur)
		if gaps == 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("%d gaps left after %d reads", gaps, reads)
		case <-tick.C:
		}
	}
}
