package conformance

import (
	"context"
	"time"

	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// SilentHolder is an optional capability of a Harness: HoldSilently holds
// every id (picked to failed, in one transaction, recorded as Apply records
// it, so FetchStatuses and the change feed see it) and commits without any
// notification reaching a subscription. That is the write of a
// PgQueuer-compatible worker that holds a job with a plain UPDATE, which
// PgQueuer's trigger does not announce. Needed by case 19.
type SilentHolder interface {
	HoldSilently(ctx context.Context, ids ...jobwatch.JobID) error
}

const capSilent capability = "SilentHolder"

// silentRefresh is case 19's refresh interval: the latency it allows a
// change nobody announces.
const silentRefresh = 300 * time.Millisecond

// Rule: a hold committed without any notification is still final for a
// watcher with WithSettleOnHold(true): its next poll (which reads the
// change feed when the backend has one) sees it, so the wait ends within
// one refresh interval (plus its 10% jitter, a debounce window and slack),
// resolved by the poll.
func caseSilentHold(e *env) {
	sh := e.h.(SilentHolder)
	id := e.enqueue(1)[0]
	e.apply(sm.Claim, id)
	w := e.watcher(jobwatch.WithRefreshInterval(silentRefresh), jobwatch.WithDebounce(quick), jobwatch.WithSettleOnHold(true))
	e.waitListening(w)
	mark := e.d.mark()
	ch := e.goWait(w, id)
	e.readSince(mark, id)
	before, notes := w.Stats(), e.d.counts().notes

	ctx, cancel := e.op()
	err := sh.HoldSilently(ctx, id)
	cancel()
	held := time.Now()
	if err != nil {
		e.t.Fatalf("SilentHolder.HoldSilently: %v", err)
	}
	r := recv(e, ch, "Wait on a job held without a notification")
	e.wantState(r, sm.Failed, "WithSettleOnHold, held without a notification")
	if bound := silentRefresh*11/10 + quick + slack; r.at.Sub(held) > bound {
		e.t.Errorf("a silent hold was seen %s after it committed; want by the next poll (refresh %s, bound %s)",
			r.at.Sub(held), silentRefresh, bound)
	}
	if got := e.d.counts().notes - notes; got != 0 {
		e.t.Errorf("the harness's HoldSilently sent %d notification(s); it must send none", got)
	}
	if got := causeDelta(w.Stats().Resolved, before.Resolved); got.Poll != 1 || got.Total() != 1 {
		e.t.Errorf("Stats.Resolved grew by %+v; want the silent hold resolved by the poll", got)
	}
}
