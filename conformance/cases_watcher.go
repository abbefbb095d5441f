package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// cases is the suite, in order. Each rule is what a failing case reports.
func cases() []testCase {
	return []testCase{
		{"01_terminal_states_resolve", "every terminal state ends a wait with exactly that state; a wait registered before the change is resolved by the notification", capNone, caseTerminalStates},
		{"02_finished_before_wait", "a job already finished when Wait is called resolves within one debounce window by the wait's own read, with no notification", capNone, caseFinishedBeforeWait},
		{"03_listen_then_check_race", "listen, then check: a job finishing at any moment relative to Wait is never missed", capNone, caseListenThenCheck},
		{"04_held_is_not_final", "held (failed) ends a wait only with WithSettleOnHold(true); a held job requeued, claimed and completed resolves successful", capNone, caseHeld},
		{"05_not_found_after_grace", "an id unknown for the whole not-found grace ends with ErrNotFound after the grace, never before; a job created during the grace is found", capNone, caseNotFound},
		{"06_wait_all_and_wait_any", "WaitAll returns states in input order with duplicates; WaitAny returns the first job to settle and drops the other waits at once", capNone, caseWaitAllAny},
		{"07_ctx_cancel_and_invalid_ids", "a done ctx ends a wait promptly with ctx's error and the wait is forgotten at once; ids <= 0 and empty lists fail with ErrInvalidID", capNone, caseCancelAndInvalid},
		{"08_close_ends_waits", "Close ends every pending wait with ErrClosed, releases the subscription, is idempotent; waits after Close return ErrClosed", capNone, caseClose},
		{"09_bursts_coalesce", "notifications inside one debounce window cause one status read, two at most", capNone, caseBurst},
		{"10_ten_thousand_waiters", "10,000 concurrent waiters all resolve correctly from batched status reads", capNone, caseManyWaiters},
		{"11_foreign_and_garbled_notifications", "garbled, foreign and other-event notifications never resolve a wait wrongly, never stop the watcher and are not errors", capRaw, caseGarbage},
		{"12_spurious_notifications", "duplicate and spurious notifications never resolve a wait wrongly", capNone, caseSpurious},
		{"13_driver_listen_is_live", "Driver.Listen returns only once the subscription is live; Next honours ctx; Subscription.Close is idempotent and ends a blocked Next", capNone, caseListenLive},
		{"14_driver_fetch_statuses", "Driver.FetchStatuses returns each known id at most once with its state, omits unknown ids, accepts empty input and honours a cancelled ctx", capNone, caseFetchStatuses},
		{"15_reconnect_resyncs", "after the listener connection is lost, the watcher reconnects and re-reads every pending job at once, without waiting for the poll", capBreaker, caseReconnect},
		{"16_illegal_transitions_refused", "an illegal transition is refused with statemachine.ErrIllegalTransition and changes nothing, not even the legal part of its transaction", capNone, caseIllegal},
		{"17_out_of_order_commits", "a change whose transaction began first but commits after later ones is still seen by notification, and a rolled-back one changes nothing", capOpen, caseOutOfOrder},
		{"18_driver_change_feed", "ChangeFeed.Changes starts at the present, then returns every job changed after its cursor with its current state, and honours ctx", capFeed, caseChangeFeed},
		{"19_silent_hold_seen_by_poll", "a hold committed without a notification ends a WithSettleOnHold wait at the next poll, within one refresh interval", capSilent, caseSilentHold},
		{"20_fetch_cancel_mid_read", "a ctx that ends in the middle of a FetchStatuses read makes it return an error promptly, never the rows read so far", capStall, caseFetchCancelMidRead},
		{"21_next_after_ctx_timeout", "a Next whose ctx ended leaves the subscription usable: Next again on it delivers later changes", capNone, caseNextAfterTimeout},
		{"22_fetch_results_independent", "each FetchStatuses result is its caller's own: later or concurrent calls for other ids never change it", capNone, caseFetchIndependent},
	}
}

// Rule: every terminal state ends a wait with exactly that state
// (successful via claim+complete, exception via claim+error, canceled from
// queued and from picked, deleted from queued and from held); a wait
// registered before the change is resolved by the notification (refresh
// 1h: no poll can do it).
func caseTerminalStates(e *env) {
	ids := e.enqueue(6)
	qCancel, qDelete, pComplete, pError, pCancel, hDelete := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	e.apply(sm.Claim, pComplete, pError, pCancel, hDelete)
	e.apply(sm.Hold, hDelete)

	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick))
	e.waitListening(w)
	before := w.Stats()

	scenarios := []struct {
		name string
		id   jobwatch.JobID
		want sm.State
	}{
		{"claim+complete", pComplete, sm.Successful},
		{"claim+error", pError, sm.Exception},
		{"cancel while queued", qCancel, sm.Canceled},
		{"cancel while picked", pCancel, sm.Canceled},
		{"delete while queued", qDelete, sm.Deleted},
		{"delete while held", hDelete, sm.Deleted},
	}
	mark := e.d.mark()
	chs := make([]<-chan waitResult, len(scenarios))
	for i, s := range scenarios {
		chs[i] = e.goWait(w, s.id)
	}
	e.readSince(mark, ids...)

	e.apply(sm.Complete, pComplete)
	e.apply(sm.Error, pError)
	e.apply(sm.Cancel, qCancel, pCancel)
	e.apply(sm.Delete, qDelete, hDelete)

	for i, s := range scenarios {
		e.wantState(recv(e, chs[i], s.name), s.want, s.name)
	}
	got := causeDelta(w.Stats().Resolved, before.Resolved)
	// A Resync (the subscription's own "notifications may have been
	// lost", e.g. on a buffer overflow) counts as a notification here.
	if got.Notification+got.Resync != uint64(len(scenarios)) || got.Total() != uint64(len(scenarios)) {
		e.t.Errorf("Stats.Resolved grew by %+v; want all %d resolved by notification (the waits were registered and read before the changes, and there is no poll)", got, len(scenarios))
	}
}

// Rule: a job already finished when Wait is called resolves within one
// debounce window (default debounce) by the wait's own read, with no
// notification (refresh 1h, nothing commits meanwhile).
func caseFinishedBeforeWait(e *env) {
	ids := e.enqueue(3)
	a, b, c := ids[0], ids[1], ids[2]
	e.apply(sm.Claim, a, b)
	e.apply(sm.Complete, a)
	e.apply(sm.Error, b)
	e.apply(sm.Cancel, c)

	w := e.watcher(jobwatch.WithRefreshInterval(hour))
	e.waitListening(w)
	before, dBefore := w.Stats(), e.d.counts()
	bound := jobwatch.DefaultDebounce + slack

	ctx, cancel := context.WithTimeout(e.ctx, bound)
	start := time.Now()
	st, err := w.Wait(ctx, a)
	elapsed := time.Since(start)
	cancel()
	switch {
	case err != nil:
		e.t.Fatalf("Wait on a job already successful: error %v after %s (bound %s)", err, elapsed, bound)
	case st != sm.Successful:
		e.t.Errorf("Wait on a job already successful returned %s", st)
	}

	ctx, cancel = context.WithTimeout(e.ctx, bound)
	start = time.Now()
	states, err := w.WaitAll(ctx, []jobwatch.JobID{b, c, b})
	elapsed = time.Since(start)
	cancel()
	want := []sm.State{sm.Exception, sm.Canceled, sm.Exception}
	if err != nil || !slices.Equal(states, want) {
		e.t.Errorf("WaitAll on finished jobs = %v, %v after %s; want %v, nil within %s", states, err, elapsed, want, bound)
	}

	after, dAfter := w.Stats(), e.d.counts()
	if after.Notifications != before.Notifications || dAfter.notes != dBefore.notes {
		e.t.Errorf("notifications arrived although nothing committed: Stats.Notifications %d -> %d, delivered by Next %d -> %d",
			before.Notifications, after.Notifications, dBefore.notes, dAfter.notes)
	}
	// The read that follows subscribing (a resync) may still be due when
	// the first wait registers and serve it: that is no notification either.
	if got := causeDelta(after.Resolved, before.Resolved); got.Wait+got.Resync != 3 || got.Total() != 3 {
		e.t.Errorf("Stats.Resolved grew by %+v; want the 3 jobs resolved by the waits' own reads", got)
	}
}

// Rule: listen, then check: a job finishing at any moment relative to Wait
// (here: completed by one goroutine while another calls Wait) is never
// missed. Refresh 1h, so a missed change is never repaired by a poll.
func caseListenThenCheck(e *env) {
	const rounds, perRound = 16, 20
	ids := e.enqueue(rounds * perRound)
	e.applyBatched(sm.Claim, 1000, ids)

	ws := []*jobwatch.Watcher{
		e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(0)),
		e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick)),
	}
	for _, w := range ws {
		e.waitListening(w)
	}
	var missed []string
	for r := 0; r < rounds; r++ {
		w := ws[r%len(ws)]
		chunk := ids[r*perRound : (r+1)*perRound]
		start := make(chan struct{})
		waits := make([]chan waitResult, len(chunk))
		applied := make(chan error, len(chunk))
		for i, id := range chunk {
			waits[i] = make(chan waitResult, 1)
			ctx, cancel := e.op()
			go func(ch chan<- waitResult) {
				defer cancel()
				<-start
				st, err := w.Wait(ctx, id)
				ch <- waitResult{st, err, time.Now()}
			}(waits[i])
			go func() {
				<-start
				ctx, cancel := e.op()
				defer cancel()
				applied <- e.h.Apply(ctx, sm.Complete, id)
			}()
		}
		close(start)
		for range chunk {
			if err := recv(e, (<-chan error)(applied), "Harness.Apply(complete)"); err != nil {
				e.t.Fatalf("Harness.Apply(complete): %v", err)
			}
		}
		for i, id := range chunk {
			res := recv(e, (<-chan waitResult)(waits[i]), "Wait")
			if res.err != nil || res.state != sm.Successful {
				missed = append(missed, fmt.Sprintf("job %d (debounce %s): %s, %v", id, []string{"0", quick.String()}[r%2], res.state, res.err))
			}
		}
		if len(missed) > 0 {
			e.t.Fatalf("round %d of %d: %d of %d jobs completed concurrently with Wait were missed or wrong; first: %s", r+1, rounds, len(missed), len(chunk), missed[0])
		}
	}
}

// Rule: held (failed) is not final: without WithSettleOnHold a wait on a
// held job stays pending (a short ctx times out); with
// WithSettleOnHold(true) it resolves as failed; a held job that is
// requeued, claimed and completed resolves successful.
func caseHeld(e *env) {
	ids := e.enqueue(4)
	a, b, s, c := ids[0], ids[1], ids[2], ids[3]
	e.apply(sm.Claim, ids...)
	e.apply(sm.Hold, b)

	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick))
	e.waitListening(w)

	const short = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.ctx, short)
	st, err := w.Wait(ctx, b)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		e.t.Errorf("Wait (%s ctx) on a job held before the wait = %s, %v; want context.DeadlineExceeded", short, st, err)
	}

	mark := e.d.mark()
	chA, chS := e.goWait(w, a), e.goWait(w, s)
	e.readSince(mark, a, s)
	e.apply(sm.Hold, a)
	e.apply(sm.Complete, s) // sentinel: the read that resolves it saw a held
	e.mustState(recv(e, chS, "Wait on the sentinel"), sm.Successful, "sentinel completed after the hold")
	pending(e, chA, "Wait on a job that became held while waited")

	e.apply(sm.Requeue, a)
	e.apply(sm.Claim, a)
	e.apply(sm.Complete, a)
	e.wantState(recv(e, chA, "Wait on a held job requeued and completed"), sm.Successful, "held, requeued, claimed, completed")

	w2 := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick), jobwatch.WithSettleOnHold(true))
	e.waitListening(w2)
	e.wantState(recv(e, e.goWait(w2, b), "WithSettleOnHold: Wait on a held job"), sm.Failed, "WithSettleOnHold, held before the wait")
	mark = e.d.mark()
	chC := e.goWait(w2, c)
	e.readSince(mark, c)
	e.apply(sm.Hold, c)
	e.wantState(recv(e, chC, "WithSettleOnHold: Wait on a job held while waited"), sm.Failed, "WithSettleOnHold, held while waited")
}

// Rule: an id unknown for the whole not-found grace ends with ErrNotFound
// (a *NotFoundError naming it) soon after the grace and never before (refresh
// 1h: the watcher must time the grace itself); a job created during the
// grace is found; WaitAll reports not-found ids only once the others
// settle, and WaitAny skips them unless none is found.
func caseNotFound(e *env) {
	const grace = 300 * time.Millisecond
	ids := e.enqueue(3)
	b, b2 := ids[1], ids[2]
	e.apply(sm.Claim, b, b2)
	predicted := []jobwatch.JobID{ids[2] + 1, ids[2] + 2, ids[2] + 3}
	u := func(i int) jobwatch.JobID { return jobwatch.JobID(1<<50 + i) }

	w := e.watcher(jobwatch.WithNotFoundGrace(grace), jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick))
	e.waitListening(w)

	mark := e.d.mark()
	start := time.Now()
	chU := e.goWait(w, u(1))
	chAll := e.goWaitAll(w, []jobwatch.JobID{b, u(2), b})
	chAny := e.goWaitAny(w, []jobwatch.JobID{u(3), b2})
	chNone := e.goWaitAny(w, []jobwatch.JobID{u(4), u(5)})
	chPred := e.goWaitAll(w, predicted)
	e.readSince(mark, append([]jobwatch.JobID{b, b2, u(1), u(2), u(3), u(4), u(5)}, predicted...)...)
	// The predicted ids were read as unknown; now create them, in the grace.
	got := e.enqueue(3)
	predictable := slices.Equal(got, predicted)

	r := recv(e, chU, "Wait on an unknown id")
	e.wantNotFound(r.err, []jobwatch.JobID{u(1)}, "Wait on an unknown id")
	if el := r.at.Sub(start); el < grace {
		e.t.Errorf("Wait on an unknown id ended after %s, before the %s grace", el, grace)
	} else if el > grace+quick+slack {
		e.t.Errorf("Wait on an unknown id ended after %s; want soon after the %s grace", el, grace)
	}
	rn := recv(e, chNone, "WaitAny on unknown ids")
	e.wantNotFound(rn.err, []jobwatch.JobID{u(4), u(5)}, "WaitAny on only unknown ids")
	if el := rn.at.Sub(start); el < grace {
		e.t.Errorf("WaitAny on unknown ids ended after %s, before the %s grace", el, grace)
	}

	// The two waits above ended at the grace: the watcher has acted on
	// its expiry, so the waits below must stay pending.
	pending(e, chAll, "WaitAll on a pending job and an unknown id, after the grace")
	pending(e, chAny, "WaitAny on an unknown id and a pending job, after the grace")
	if predictable {
		pending(e, chPred, "WaitAll on jobs created during the grace, after the grace")
	}

	e.apply(sm.Complete, b, b2)
	if predictable {
		e.apply(sm.Claim, got...)
		e.apply(sm.Complete, got...)
	}
	ra := recv(e, chAll, "WaitAll")
	if want := []sm.State{sm.Successful, sm.None, sm.Successful}; !slices.Equal(ra.states, want) {
		e.t.Errorf("WaitAll([found, unknown, found]) states = %v, want %v", ra.states, want)
	}
	e.wantNotFound(ra.err, []jobwatch.JobID{u(2)}, "WaitAll([found, unknown, found])")
	rany := recv(e, chAny, "WaitAny")
	if want := (jobwatch.Status{ID: b2, State: sm.Successful}); rany.err != nil || rany.status != want {
		e.t.Errorf("WaitAny([unknown, found]) = %v, %v; want %v, nil", rany.status, rany.err, want)
	}
	if predictable {
		rp := recv(e, chPred, "WaitAll on jobs created during the grace")
		if want := []sm.State{sm.Successful, sm.Successful, sm.Successful}; rp.err != nil || !slices.Equal(rp.states, want) {
			e.t.Errorf("WaitAll on jobs created during the grace = %v, %v; want %v, nil", rp.states, rp.err, want)
		}
	} else {
		e.t.Logf("the backend's ids are not sequential (expected %v, Enqueue returned %v): the found-during-grace check was not run", predicted, got)
	}
}

func (e *env) wantNotFound(err error, ids []jobwatch.JobID, what string) {
	e.t.Helper()
	var nf *jobwatch.NotFoundError
	switch {
	case !errors.Is(err, jobwatch.ErrNotFound):
		e.t.Errorf("%s: error %v, want one matching ErrNotFound", what, err)
	case !errors.As(err, &nf):
		e.t.Errorf("%s: error %v is not a *NotFoundError", what, err)
	case !sameIDs(nf.IDs, ids):
		e.t.Errorf("%s: NotFoundError.IDs = %v, want %v", what, nf.IDs, ids)
	}
}

// wantIdle checks that no wait is registered any more.
func (e *env) wantIdle(w *jobwatch.Watcher, what string) {
	e.t.Helper()
	if s := w.Stats(); s.Pending != 0 || s.Waiters != 0 {
		e.t.Errorf("%s: Stats.Pending=%d Waiters=%d, want 0 (a finished wait must be forgotten at once)", what, s.Pending, s.Waiters)
	}
}

// Rule: WaitAll returns the states in input order, duplicates included,
// whatever order the jobs finish in; WaitAny returns the first job to settle
// (or one already settled) and drops the waits on the others at once.
func caseWaitAllAny(e *env) {
	ids := e.enqueue(6)
	a, b, c, d, f, g := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	e.apply(sm.Claim, ids...)
	w := e.watcher(jobwatch.WithDebounce(quick))
	e.waitListening(w)

	mark := e.d.mark()
	chAll := e.goWaitAll(w, []jobwatch.JobID{a, b, a, c})
	e.readSince(mark, a, b, c)
	e.apply(sm.Cancel, c)
	e.apply(sm.Error, b)
	e.apply(sm.Complete, a)
	ra := recv(e, chAll, "WaitAll")
	if want := []sm.State{sm.Successful, sm.Exception, sm.Successful, sm.Canceled}; ra.err != nil || !slices.Equal(ra.states, want) {
		e.t.Fatalf("WaitAll([a, b, a, c]) = %v, %v; want %v, nil", ra.states, ra.err, want)
	}
	e.wantIdle(w, "after WaitAll returned")

	mark = e.d.mark()
	chAny := e.goWaitAny(w, []jobwatch.JobID{d, f, g, f})
	e.readSince(mark, d, f, g)
	e.apply(sm.Complete, f)
	rany := recv(e, chAny, "WaitAny")
	if want := (jobwatch.Status{ID: f, State: sm.Successful}); rany.err != nil || rany.status != want {
		e.t.Fatalf("WaitAny([d, f, g, f]) = %v, %v; want %v, nil", rany.status, rany.err, want)
	}
	e.wantIdle(w, "after WaitAny returned")

	rany = recv(e, e.goWaitAny(w, []jobwatch.JobID{d, a}), "WaitAny with a settled job")
	if want := (jobwatch.Status{ID: a, State: sm.Successful}); rany.err != nil || rany.status != want {
		e.t.Errorf("WaitAny([pending, already successful]) = %v, %v; want %v, nil", rany.status, rany.err, want)
	}
	e.wantIdle(w, "after WaitAny returned")
}

// Rule: a cancelled or expired ctx ends a wait promptly with ctx's error
// and the wait is forgotten at once (WaitAll returns what settled so far);
// ids <= 0 and empty lists fail with ErrInvalidID and register nothing.
func caseCancelAndInvalid(e *env) {
	ids := e.enqueue(2)
	a, b := ids[0], ids[1]
	e.apply(sm.Claim, a, b)
	e.apply(sm.Complete, b)
	w := e.watcher(jobwatch.WithDebounce(quick))
	e.waitListening(w)
	const prompt = 250 * time.Millisecond

	ctx, cancel := context.WithCancel(e.ctx)
	mark := e.d.mark()
	ch := e.goWaitCtx(ctx, cancel, w, a)
	e.readSince(mark, a)
	t0 := time.Now()
	cancel()
	r := recvWithin(e, ch, slack, "Wait after its ctx was cancelled")
	if !errors.Is(r.err, context.Canceled) {
		e.t.Errorf("Wait after cancel = %s, %v; want context.Canceled", r.state, r.err)
	}
	if lat := r.at.Sub(t0); lat > prompt {
		e.t.Errorf("Wait returned %s after its ctx was cancelled; want within %s", lat, prompt)
	}
	e.wantIdle(w, "after a cancelled Wait")

	const short = 100 * time.Millisecond
	ctx, cancel = context.WithTimeout(e.ctx, short)
	t0 = time.Now()
	st, err := w.Wait(ctx, a)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		e.t.Errorf("Wait with a %s ctx on a pending job = %s, %v; want context.DeadlineExceeded", short, st, err)
	} else if el := time.Since(t0); el > short+prompt {
		e.t.Errorf("Wait with a %s ctx returned after %s", short, el)
	}

	ctx, cancel = context.WithTimeout(e.ctx, 300*time.Millisecond)
	states, err := w.WaitAll(ctx, []jobwatch.JobID{b, a})
	cancel()
	if want := []sm.State{sm.Successful, sm.None}; !errors.Is(err, context.DeadlineExceeded) || !slices.Equal(states, want) {
		e.t.Errorf("WaitAll([successful, pending]) with a 300ms ctx = %v, %v; want %v, context.DeadlineExceeded", states, err, want)
	}

	ctx, cancel = context.WithTimeout(e.ctx, short)
	_, err = w.WaitAny(ctx, []jobwatch.JobID{a})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		e.t.Errorf("WaitAny with a %s ctx on a pending job: %v; want context.DeadlineExceeded", short, err)
	}

	ctx, cancel = context.WithCancel(e.ctx)
	cancel()
	t0 = time.Now()
	if _, err := w.Wait(ctx, a); !errors.Is(err, context.Canceled) {
		e.t.Errorf("Wait with an already cancelled ctx: %v; want context.Canceled", err)
	} else if el := time.Since(t0); el > prompt {
		e.t.Errorf("Wait with an already cancelled ctx took %s", el)
	}
	e.wantIdle(w, "after waits ended by their ctx")

	// A watcher that accepted these would wait forever: bound them.
	ctx, cancel = context.WithTimeout(e.ctx, slack)
	defer cancel()
	for _, id := range []jobwatch.JobID{0, -1} {
		if _, err := w.Wait(ctx, id); !errors.Is(err, jobwatch.ErrInvalidID) {
			e.t.Errorf("Wait(%d): %v, want ErrInvalidID", id, err)
		}
	}
	for _, l := range [][]jobwatch.JobID{{a, 0}, {-1}, nil, {}} {
		if _, err := w.WaitAll(ctx, l); !errors.Is(err, jobwatch.ErrInvalidID) {
			e.t.Errorf("WaitAll(%v): %v, want ErrInvalidID", l, err)
		}
		if _, err := w.WaitAny(ctx, l); !errors.Is(err, jobwatch.ErrInvalidID) {
			e.t.Errorf("WaitAny(%v): %v, want ErrInvalidID", l, err)
		}
	}
	e.wantIdle(w, "after waits with invalid ids")
}

// closeWithin closes w and fails the case if Close does not return in time.
func (e *env) closeWithin(w *jobwatch.Watcher, what string) error {
	e.t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- w.Close() }()
	return recv(e, (<-chan error)(ch), what)
}

// Rule: Close ends every pending Wait, WaitAll and WaitAny with ErrClosed,
// releases the subscription, is idempotent, and waits started after it
// return ErrClosed.
func caseClose(e *env) {
	ids := e.enqueue(2)
	a, b := ids[0], ids[1]
	e.apply(sm.Claim, a, b)
	w := e.watcher(jobwatch.WithDebounce(quick))
	e.waitListening(w)

	registered := func(prev int) int {
		e.t.Helper()
		var n int
		e.eventually("the new wait is registered (Stats.Waiters grows)", func() bool { n = w.Stats().Waiters; return n > prev })
		return n
	}
	chW := e.goWait(w, a)
	n := registered(0)
	chAll := e.goWaitAll(w, []jobwatch.JobID{a, b})
	n = registered(n)
	chAny := e.goWaitAny(w, []jobwatch.JobID{b})
	registered(n)

	if err := e.closeWithin(w, "Close"); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	if r := recv(e, chW, "pending Wait after Close"); !errors.Is(r.err, jobwatch.ErrClosed) {
		e.t.Errorf("pending Wait after Close = %s, %v; want ErrClosed", r.state, r.err)
	}
	if r := recv(e, chAll, "pending WaitAll after Close"); !errors.Is(r.err, jobwatch.ErrClosed) || !slices.Equal(r.states, []sm.State{sm.None, sm.None}) {
		e.t.Errorf("pending WaitAll after Close = %v, %v; want [%s %s], ErrClosed", r.states, r.err, sm.None, sm.None)
	}
	if r := recv(e, chAny, "pending WaitAny after Close"); !errors.Is(r.err, jobwatch.ErrClosed) {
		e.t.Errorf("pending WaitAny after Close = %v, %v; want ErrClosed", r.status, r.err)
	}
	if err := e.closeWithin(w, "second Close"); err != nil {
		e.t.Errorf("second Close: %v, want nil (idempotent)", err)
	}
	if r := recv(e, e.goWait(w, a), "Wait after Close"); !errors.Is(r.err, jobwatch.ErrClosed) {
		e.t.Errorf("Wait after Close = %s, %v; want ErrClosed", r.state, r.err)
	}
	if r := recv(e, e.goWaitAll(w, []jobwatch.JobID{a}), "WaitAll after Close"); !errors.Is(r.err, jobwatch.ErrClosed) {
		e.t.Errorf("WaitAll after Close = %v, %v; want ErrClosed", r.states, r.err)
	}
	if r := recv(e, e.goWaitAny(w, []jobwatch.JobID{a}), "WaitAny after Close"); !errors.Is(r.err, jobwatch.ErrClosed) {
		e.t.Errorf("WaitAny after Close = %v, %v; want ErrClosed", r.status, r.err)
	}
	if open := e.d.counts().openSubs; open != 0 {
		e.t.Errorf("after Close, %d subscription(s) the watcher opened are still open; Close must release the listening connection", open)
	}
	e.wantIdle(w, "after Close")
}

// Rule: bursts coalesce: a burst of 1,000 notifications inside one debounce
// window causes at most 2 status reads. The limit allows 2 reads per
// debounce window the burst spanned, 2*(1+floor(burst/debounce)), so a slow
// backend is not failed, but one read per notification is.
func caseBurst(e *env) {
	const burst = 1000
	const debounce = 500 * time.Millisecond
	a := e.enqueue(1)[0]
	e.apply(sm.Claim, a)
	w := e.watcher(jobwatch.WithDebounce(debounce), jobwatch.WithRefreshInterval(hour))
	e.waitListening(w)
	mark := e.d.mark()
	// The wait spans the burst, however long a loaded machine takes to
	// commit it; recv bounds it once the burst is over.
	wctx, cancel := context.WithCancel(e.ctx)
	ch := e.goWaitCtx(wctx, cancel, w, a)
	e.readSince(mark, a)
	e.eventually("no status read is in flight", func() bool { return e.d.counts().inflight == 0 })

	start, sBefore := e.d.mark(), w.Stats()
	t0 := time.Now()
	for i := 0; i < burst; i++ {
		e.enqueue(1) // one commit, one notification
	}
	e.apply(sm.Complete, a)
	spanned := time.Since(t0)
	e.wantState(recv(e, ch, "Wait after the burst"), sm.Successful, "job completed at the end of a burst")
	reads := e.d.mark() - start
	limit := uint64(2 * (1 + int(spanned/debounce)))
	if reads > limit {
		s := w.Stats()
		e.t.Errorf("a burst of %d commits over %s (debounce %s) caused %d status reads; want at most %d (watcher: %d notifications, reads by cause %+v)",
			burst+1, spanned, debounce, reads, limit, s.Notifications-sBefore.Notifications, causeDelta(s.Reads, sBefore.Reads))
	} else {
		e.t.Logf("a burst of %d commits over %s (debounce %s) caused %d status read(s) (limit %d)", burst+1, spanned, debounce, reads, limit)
	}
}

// Rule: a wait costs O(1): 10,000 concurrent waiters (one goroutine each,
// default options) all resolve with the right state after batched claim and
// completion, and no status read carries more ids than the batch size.
func caseManyWaiters(e *env) {
	const n, batch = 10000, 1000
	ids := make([]jobwatch.JobID, 0, n)
	for len(ids) < n {
		ids = append(ids, e.enqueue(batch)...)
	}
	w := e.watcher()
	e.waitListening(w)

	ctx, cancel := context.WithTimeout(e.ctx, 2*e.timeout)
	defer cancel()
	results := make([]waitResult, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := w.Wait(ctx, id)
			results[i] = waitResult{st, err, time.Now()}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	e.eventually(fmt.Sprintf("all %d waits are registered (Stats.Pending)", n), func() bool { return w.Stats().Pending == n })

	e.applyBatched(sm.Claim, batch, ids)
	e.applyBatched(sm.Complete, batch, ids[:n/2])
	e.applyBatched(sm.Error, batch, ids[n/2:])
	recvWithin(e, (<-chan struct{})(done), 2*e.timeout+slack, fmt.Sprintf("%d waits", n))

	var wrong []string
	for i, r := range results {
		want := sm.Successful
		if i >= n/2 {
			want = sm.Exception
		}
		if r.err != nil || r.state != want {
			wrong = append(wrong, fmt.Sprintf("job %d: %s, %v (want %s)", ids[i], r.state, r.err, want))
		}
	}
	if len(wrong) > 0 {
		e.t.Errorf("%d of %d waits ended wrongly; first: %s", len(wrong), n, wrong[0])
	}
	c := e.d.counts()
	if c.maxBatch > jobwatch.DefaultBatchSize {
		e.t.Errorf("a status read carried %d ids; the default batch size is %d", c.maxBatch, jobwatch.DefaultBatchSize)
	}
	e.t.Logf("%d waiters: %d status reads, %d ids read", n, c.reads, c.ids)
	e.wantIdle(w, "after every wait returned")
}

// Rule: notifications are hints: garbled payloads, foreign tables' events
// and other event types (cancellation_event naming the waited job,
// health_check_event) never resolve a wait wrongly, never stop the watcher
// and are not errors (Stats.LastError stays nil, no reconnect).
func caseGarbage(e *env) {
	rn := e.h.(RawNotifier)
	ids := e.enqueue(2)
	a, s := ids[0], ids[1]
	e.apply(sm.Claim, a, s)
	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick))
	e.waitListening(w)
	mark := e.d.mark()
	chA, chS := e.goWait(w, a), e.goWait(w, s)
	e.readSince(mark, a, s)
	before := w.Stats()

	payloads := []string{
		"garbage", "", "{", "}", "null", "[]", "42", `"table_changed_event"`,
		`{"type":1}`, `{"type":null}`, `{"type":["table_changed_event"]}`, `{"no_type":true}`,
		`{"type":"table_changed_event"`, // truncated
		`{"type":"table_changed_event","table":5}`,
		`{"type":"cancellation_event","ids":"x"}`,
		fmt.Sprintf(`{"type":"cancellation_event","ids":[%d]}`, a),
		`{"type":"cancellation_event","ids":[1]}`,
		`{"type":"health_check_event","id":"x"}`,
		`{"type":"health_check_event","id":7}`,
		`{"type":"some_future_event","ids":[1,2,3]}`,
		`{"channel":"ch_pgqueuer","operation":"update","sent_at":"2024-01-01T00:00:00.000000+00:00","table":"not_our_queue","type":"table_changed_event"}`,
		`{"channel":"ch_pgqueuer","operation":"truncate","sent_at":"2024-01-01T00:00:00.000000+00:00","table":"pgqueuer_log","type":"table_changed_event"}`,
		`{"type":"table_changed_event","table":"x","extra":{"deeply":[{"nested":null}]}}`,
		"\x01\x02\x7f control characters",
		string(slices.Repeat([]byte("x"), 7000)),
	}
	for _, p := range payloads {
		ctx, cancel := e.op()
		err := rn.NotifyRaw(ctx, p)
		cancel()
		if err != nil {
			e.t.Fatalf("NotifyRaw(%.40q): %v", p, err)
		}
	}
	e.apply(sm.Complete, s)
	e.mustState(recv(e, chS, "Wait on a job completed after the garbage"), sm.Successful, "real change after garbage")
	pending(e, chA, "Wait on a picked job named by a cancellation_event")

	after := w.Stats()
	if before.LastError == nil && after.LastError != nil {
		e.t.Errorf("Stats.LastError set by ignorable notifications: %v", after.LastError)
	}
	if after.Reconnects != before.Reconnects {
		e.t.Errorf("the listener reconnected %d time(s) because of ignorable notifications", after.Reconnects-before.Reconnects)
	}
	if !after.Listening {
		e.t.Errorf("the watcher stopped listening after ignorable notifications")
	}
	e.apply(sm.Complete, a)
	e.wantState(recv(e, chA, "Wait on a job completed after the garbage"), sm.Successful, "job named by a cancellation_event, then completed")
}

// Rule: duplicate and spurious notifications never resolve a wait wrongly:
// a picked and a queued job stay pending through many unrelated commits
// (and, with RawNotifier, many copies of a genuine-looking change event).
func caseSpurious(e *env) {
	ids := e.enqueue(3)
	a, q, s := ids[0], ids[1], ids[2]
	e.apply(sm.Claim, a, s)
	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(0))
	e.waitListening(w)
	mark := e.d.mark()
	chA, chQ, chS := e.goWait(w, a), e.goWait(w, q), e.goWait(w, s)
	e.readSince(mark, a, q, s)

	for i := 0; i < 20; i++ {
		x := e.enqueue(2)
		e.apply(sm.Claim, x...)
		e.apply(sm.Complete, x[0])
		e.apply(sm.Error, x[1])
	}
	if rn, ok := e.h.(RawNotifier); ok {
		const genuine = `{"channel":"ch_pgqueuer","operation":"update","sent_at":"2024-01-01T00:00:00.000000+00:00","table":"pgqueuer","type":"table_changed_event"}`
		for i := 0; i < 50; i++ {
			ctx, cancel := e.op()
			err := rn.NotifyRaw(ctx, genuine)
			cancel()
			if err != nil {
				e.t.Fatalf("NotifyRaw: %v", err)
			}
		}
	}
	e.apply(sm.Complete, s)
	e.mustState(recv(e, chS, "Wait on the sentinel"), sm.Successful, "sentinel completed after the unrelated commits")
	pending(e, chA, "Wait on a picked job during unrelated commits")
	pending(e, chQ, "Wait on a queued job during unrelated commits")
	if p := w.Stats().Pending; p != 2 {
		e.t.Errorf("Stats.Pending = %d, want 2", p)
	}
	e.apply(sm.Claim, q)
	e.apply(sm.Complete, a, q)
	e.wantState(recv(e, chA, "Wait on a"), sm.Successful, "picked job completed after spurious notifications")
	e.wantState(recv(e, chQ, "Wait on q"), sm.Successful, "queued job completed after spurious notifications")
}

// Rule: loss is repaired at once: after the listening connection is broken
// (changes committed meanwhile are lost), the watcher reconnects with
// backoff and re-reads every pending job (refresh 1h: not the poll), and
// keeps working afterwards.
func caseReconnect(e *env) {
	br := e.h.(ListenerBreaker)
	ids := e.enqueue(6)
	waited, later := ids[:5], ids[5]
	e.apply(sm.Claim, ids...)
	w := e.watcher(jobwatch.WithRefreshInterval(hour), jobwatch.WithDebounce(quick), jobwatch.WithBackoff(200*time.Millisecond, time.Second))
	e.waitListening(w)
	mark := e.d.mark()
	chs := make([]<-chan waitResult, len(waited))
	for i, id := range waited {
		chs[i] = e.goWait(w, id)
	}
	e.readSince(mark, waited...)
	before := w.Stats()

	ctx, cancel := e.op()
	err := br.BreakListener(ctx)
	cancel()
	if err != nil {
		e.t.Fatalf("BreakListener: %v", err)
	}
	e.apply(sm.Complete, waited...)
	for i, ch := range chs {
		e.mustState(recv(e, ch, "Wait across a broken listener"), sm.Successful, fmt.Sprintf("job %d completed while the listener was broken", waited[i]))
	}
	// Either the subscription failed and the watcher listened again, or the
	// backend reconnected in place and said so with a Resync: both re-read.
	e.eventually("Stats.Reconnects or resync reads grow", func() bool {
		s := w.Stats()
		return s.Reconnects > before.Reconnects || s.Reads.Resync > before.Reads.Resync
	})
	got := causeDelta(w.Stats().Resolved, before.Resolved)
	if got.Poll != 0 {
		e.t.Errorf("Stats.Resolved grew by %+v: resolved by a poll, but the refresh interval is 1h", got)
	}
	e.t.Logf("resolved across the break: %d by resync, %d by notification", got.Resync, got.Notification)

	e.waitListening(w)
	mark = e.d.mark()
	ch := e.goWait(w, later)
	e.readSince(mark, later)
	e.apply(sm.Complete, later)
	e.wantState(recv(e, ch, "Wait after the reconnect"), sm.Successful, "job completed after the reconnect")
}
