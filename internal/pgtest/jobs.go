package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Context returns a context bounded so that a hung database fails the test
// instead of the run. It is cancelled at cleanup.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// NextWithin calls sub.Next bounded by d.
func NextWithin(sub jobwatch.Subscription, d time.Duration) (jobwatch.Notification, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return sub.Next(ctx)
}

// Lifecycle is what the job helpers need of a backend (backends/pgx and
// backends/pq both have it).
type Lifecycle interface {
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
	FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error)
}

// PathTo is the shortest event sequence from queued to st (none for queued,
// and for a state that is not one).
func PathTo(st statemachine.State) []statemachine.Event {
	switch st {
	case statemachine.Picked:
		return []statemachine.Event{statemachine.Claim}
	case statemachine.Successful:
		return []statemachine.Event{statemachine.Claim, statemachine.Complete}
	case statemachine.Exception:
		return []statemachine.Event{statemachine.Claim, statemachine.Error}
	case statemachine.Canceled:
		return []statemachine.Event{statemachine.Cancel}
	case statemachine.Deleted:
		return []statemachine.Event{statemachine.Delete}
	case statemachine.Failed:
		return []statemachine.Event{statemachine.Claim, statemachine.Hold}
	}
	return nil
}

// Bring takes id, a queued job, to st through b's real write path (the
// events of PathTo), failing the test unless it ends there.
func Bring(t testing.TB, ctx context.Context, b Lifecycle, id jobwatch.JobID, st statemachine.State) {
	t.Helper()
	for _, ev := range PathTo(st) {
		if err := b.Apply(ctx, ev, id); err != nil {
			t.Fatalf("jobIn(%v): %s: %v", st, ev, err)
		}
	}
	if got := Status(t, ctx, b, id); got != st {
		t.Fatalf("jobIn(%v): job is %v", st, got)
	}
}

// Status is the job's current status per b.FetchStatuses (None if
// unknown).
func Status(t testing.TB, ctx context.Context, b Lifecycle, id jobwatch.JobID) statemachine.State {
	t.Helper()
	sts, err := b.FetchStatuses(ctx, []jobwatch.JobID{id})
	if err != nil {
		t.Fatalf("FetchStatuses: %v", err)
	}
	if len(sts) == 0 {
		return statemachine.None
	}
	return sts[0].State
}

// SnapshotSQL renders everything stored about a job, given the quoted
// queue and log tables: its queue row and all its log rows, as one text
// column. Params: $1 the job's id.
func SnapshotSQL(queueTable, logTable string) string {
	return `SELECT
		COALESCE((SELECT row_to_json(q)::text FROM ` + queueTable + ` q WHERE id = $1), '-') || ' | ' ||
		COALESCE((SELECT json_agg(l ORDER BY l.id)::text FROM ` + logTable + ` l WHERE job_id = $1), '-')`
}
