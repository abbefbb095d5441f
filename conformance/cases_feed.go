package conformance

import (
	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// Rule: a change whose transaction took its place first but commits after
// later changes (a long transaction) is still seen, by notification (refresh
// 1h: not the poll); a rolled-back one changes nothing, and changes after it
// are still seen.
func caseOutOfOrder(e *env) {
	op := e.h.(OpenApplier)
	ids := e.enqueue(4)
	late, early, rolled, after := ids[0], ids[1], ids[2], ids[3]
	e.apply(sm.Claim, ids...)
	// Threshold 0: the feed serves notifications even for these few waits.
	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick), jobwatch.WithFeedThreshold(0))
	e.waitListening(w)
	mark := e.d.mark()
	chLate, chEarly, chRolled, chAfter := e.goWait(w, late), e.goWait(w, early), e.goWait(w, rolled), e.goWait(w, after)
	e.readSince(mark, ids...)
	before := w.Stats()

	endLate := e.applyOpen(op, sm.Complete, late)
	endRolled := e.applyOpen(op, sm.Error, rolled)
	e.apply(sm.Complete, early)
	e.wantState(recv(e, chEarly, "Wait on the job committed second"), sm.Successful, "job committed while an older transaction was open")
	pending(e, chLate, "Wait on the job whose transaction is still open")

	endRolled(false)
	endLate(true)
	e.wantState(recv(e, chLate, "Wait on the job committed last"), sm.Successful, "job whose transaction committed after a later one")
	pending(e, chRolled, "Wait on the job whose transaction rolled back")
	e.apply(sm.Cancel, rolled, after)
	e.wantState(recv(e, chRolled, "Wait on the job after a rollback"), sm.Canceled, "job changed again after a rolled-back change")
	e.wantState(recv(e, chAfter, "Wait on a job changed after a rollback"), sm.Canceled, "job changed after a rolled-back transaction")
	if got := causeDelta(w.Stats().Resolved, before.Resolved); got.Poll != 0 {
		e.t.Errorf("resolved by the poll (%+v), but the refresh interval is 1h", got)
	}
}

// applyOpen starts an open transaction; the function it returns ends it.
// An open transaction left behind by a failing case is rolled back.
func (e *env) applyOpen(op OpenApplier, ev sm.Event, ids ...jobwatch.JobID) func(commit bool) {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	end, err := op.ApplyOpen(ctx, ev, ids...)
	if err != nil {
		e.t.Fatalf("OpenApplier.ApplyOpen(%s): %v", ev, err)
	}
	done := false
	e.t.Cleanup(func() {
		if !done {
			ctx, cancel := e.op()
			defer cancel()
			e.boundedCleanup("the rollback of an OpenApplier transaction the case left open", func() error {
				_ = end(ctx, false)
				return nil
			})
		}
	})
	return func(commit bool) {
		e.t.Helper()
		done = true
		ctx, cancel := e.op()
		defer cancel()
		if err := end(ctx, commit); err != nil {
			e.t.Fatalf("ending the open transaction (commit %v): %v", commit, err)
		}
	}
}

// Rule: ChangeFeed.Changes with a nil cursor starts at the present (no
// statuses); from a cursor it returns every job changed since, with its
// current state, at most once each; it honours ctx.
func caseChangeFeed(e *env) {
	feed := e.raw.(jobwatch.ChangeFeed)
	old := e.enqueue(1)
	ctx, cancel := e.op()
	defer cancel()
	start, err := feed.Changes(ctx, nil)
	if err != nil {
		e.t.Fatalf("Changes(nil): %v", err)
	}
	for _, st := range start.Statuses {
		if st.ID == old[0] {
			e.t.Errorf("Changes(nil) returned job %d, changed before the feed started", st.ID)
		}
	}
	if start.Cursor == nil {
		e.t.Fatal("Changes(nil) returned a nil cursor")
	}

	ids := e.enqueue(3)
	e.apply(sm.Claim, ids[0], ids[1])
	e.apply(sm.Complete, ids[0])
	e.apply(sm.Delete, ids[2])
	want := map[jobwatch.JobID]sm.State{ids[0]: sm.Successful, ids[1]: sm.Picked, ids[2]: sm.Deleted}
	cs, err := feed.Changes(ctx, start.Cursor)
	if err != nil {
		e.t.Fatalf("Changes(cursor): %v", err)
	}
	got := map[jobwatch.JobID]sm.State{}
	for _, st := range cs.Statuses {
		if _, dup := got[st.ID]; dup {
			e.t.Errorf("Changes returned job %d twice", st.ID)
		}
		got[st.ID] = st.State
	}
	for id, st := range want {
		if got[id] != st {
			e.t.Errorf("Changes: job %d = %s, want %s (changed after the cursor)", id, got[id], st)
		}
	}
	if cs.Cursor == nil {
		e.t.Error("Changes returned a nil cursor")
	}

	dead, stop := e.op()
	stop()
	done := make(chan error, 1)
	go func() { _, err := feed.Changes(dead, cs.Cursor); done <- err }()
	if err := recvWithin(e, (<-chan error)(done), slack, "Changes with a cancelled ctx"); err == nil {
		e.t.Error("Changes with a cancelled ctx succeeded, want an error")
	}
}
