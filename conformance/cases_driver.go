package conformance

import (
	"context"
	"errors"
	"time"

	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

type nextResult struct {
	n   jobwatch.Notification
	err error
	at  time.Time
}

// goNext runs sub.Next(ctx) in a goroutine.
func goNext(ctx context.Context, sub jobwatch.Subscription) <-chan nextResult {
	ch := make(chan nextResult, 1)
	go func() {
		n, err := sub.Next(ctx)
		ch <- nextResult{n, err, time.Now()}
	}()
	return ch
}

// closeSub closes sub and fails the case if Close does not return in time.
func (e *env) closeSub(sub jobwatch.Subscription, what string) error {
	e.t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- sub.Close() }()
	return recvWithin(e, (<-chan error)(ch), slack, what)
}

// listen calls Listen bounded by the suite timeout; the subscription is
// closed when the case ends.
func (e *env) listen() jobwatch.Subscription {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	sub, err := e.raw.Listen(ctx)
	if err != nil {
		e.t.Fatalf("Driver.Listen: %v", err)
	}
	if sub == nil {
		e.t.Fatal("Driver.Listen returned a nil Subscription and no error")
	}
	e.t.Cleanup(func() { e.boundedClose(sub, "cleanup of a subscription the case opened") })
	return sub
}

// awaitNext waits for a Next started with goNext. If Next outlives d, the
// subscription is closed to unblock it, and ok is false.
func (e *env) awaitNext(sub jobwatch.Subscription, ch <-chan nextResult, d time.Duration) (r nextResult, ok bool) {
	e.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r = <-ch:
		return r, true
	case <-timer.C:
		_ = e.closeSub(sub, "Subscription.Close to unblock Next")
		recvWithin(e, ch, slack, "Next after Subscription.Close")
		return nextResult{}, false
	}
}

// Rule: Driver.Listen returns only once the subscription is live: a change
// committed right after it returns is delivered by Next. Next honours ctx
// (an expired or cancelled ctx ends it with ctx's error); Listen honours a
// cancelled ctx; Subscription.Close is idempotent, bounded, and ends a
// blocked Next; Next after Close fails at once.
func caseListenLive(e *env) {
	const iterations = 10
	for i := 0; i < iterations; i++ {
		sub := e.listen()
		e.enqueue(1) // commits after Listen returned
		ctx, cancel := e.op()
		r, ok := e.awaitNext(sub, goNext(ctx, sub), e.timeout+slack)
		cancel()
		if !ok || r.err != nil {
			e.t.Fatalf("iteration %d: a change committed right after Listen returned was not delivered by Next within %s (err %v): Listen returned before the subscription was live", i, e.timeout, r.err)
		}
		if err := e.closeSub(sub, "Subscription.Close"); err != nil {
			e.t.Errorf("Subscription.Close: %v", err)
		}
	}

	// Next honours an expiring ctx. Nothing commits; tolerate a few
	// notifications the backend may send by itself (probes).
	sub := e.listen()
	const short = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.ctx, short)
	for extra := 0; ; extra++ {
		r, ok := e.awaitNext(sub, goNext(ctx, sub), short+slack)
		if !ok {
			e.t.Errorf("Next did not return within %s of its ctx expiring", slack)
			break
		}
		if r.err == nil {
			if extra >= 10 {
				e.t.Errorf("Next kept returning notifications although nothing committed")
				break
			}
			continue
		}
		if !errors.Is(r.err, context.DeadlineExceeded) {
			e.t.Errorf("Next with an expired ctx: %v, want an error matching context.DeadlineExceeded", r.err)
		}
		break
	}
	cancel()

	// Next honours an already cancelled ctx.
	sub = e.listen()
	ctx, cancel = context.WithCancel(e.ctx)
	cancel()
	if r, ok := e.awaitNext(sub, goNext(ctx, sub), slack); !ok {
		e.t.Errorf("Next with a cancelled ctx did not return within %s", slack)
	} else if !errors.Is(r.err, context.Canceled) {
		e.t.Errorf("Next with a cancelled ctx: %v, want an error matching context.Canceled", r.err)
	}

	// Listen honours a cancelled ctx.
	ch := make(chan error, 1)
	go func() {
		sub, err := e.raw.Listen(ctx)
		if err == nil {
			_ = sub.Close()
		}
		ch <- err
	}()
	if err := recvWithin(e, (<-chan error)(ch), slack, "Listen with a cancelled ctx"); err == nil {
		e.t.Errorf("Listen with a cancelled ctx succeeded, want an error")
	}

	// Close ends a blocked Next, is idempotent, and Next after it fails.
	sub = e.listen()
	ctx, cancel = e.op()
	defer cancel()
	wctx := watchDone(ctx)
	nch := goNext(wctx, sub)
	// Next has started once it asks for its ctx's Done channel, to wait on
	// it. (Close before Next blocks must end it all the same.)
	recvWithin(e, wctx.asked, e.timeout, "Next asking for its ctx's Done channel")
	t0 := time.Now()
	if err := e.closeSub(sub, "Subscription.Close with Next blocked"); err != nil {
		e.t.Errorf("Subscription.Close: %v", err)
	}
	r := recvWithin(e, nch, slack, "Next blocked when Subscription.Close was called")
	if r.err == nil {
		e.t.Errorf("Next blocked when Close was called returned a notification, want an error")
	} else if lat := r.at.Sub(t0); lat > 250*time.Millisecond {
		e.t.Errorf("Next returned %s after Close", lat)
	}
	if err := e.closeSub(sub, "second Subscription.Close"); err != nil {
		e.t.Errorf("second Subscription.Close: %v, want nil (idempotent)", err)
	}
	if r := recvWithin(e, goNext(ctx, sub), slack, "Next after Close"); r.err == nil {
		e.t.Errorf("Next after Close returned a notification, want an error")
	}
}

// Rule: Driver.FetchStatuses returns each known id at most once with its
// current state (all seven states), omits unknown ids (0 and -1 included,
// without error), returns an empty result for empty input, and fails when
// ctx is already cancelled. (Case 20 cancels in the middle of a read, case
// 22 reads concurrently.)
func caseFetchStatuses(e *env) {
	ids := e.enqueue(7)
	q, p, s, x, c, d, f := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]
	e.apply(sm.Claim, p, s, x, f)
	e.apply(sm.Complete, s)
	e.apply(sm.Error, x)
	e.apply(sm.Hold, f)
	e.apply(sm.Cancel, c)
	e.apply(sm.Delete, d)
	want := map[jobwatch.JobID]sm.State{
		q: sm.Queued, p: sm.Picked, s: sm.Successful, x: sm.Exception,
		c: sm.Canceled, d: sm.Deleted, f: sm.Failed,
	}
	const unknown = jobwatch.JobID(1 << 50)

	check := func(what string, in []jobwatch.JobID, want map[jobwatch.JobID]sm.State) {
		e.t.Helper()
		ctx, cancel := e.op()
		defer cancel()
		got, err := e.raw.FetchStatuses(ctx, in)
		if err != nil {
			e.t.Errorf("FetchStatuses(%s %v): %v", what, in, err)
			return
		}
		seen := map[jobwatch.JobID]bool{}
		for _, st := range got {
			if seen[st.ID] {
				e.t.Errorf("FetchStatuses(%s %v) returned id %d twice: %v", what, in, st.ID, got)
			}
			seen[st.ID] = true
			w, ok := want[st.ID]
			switch {
			case !ok:
				e.t.Errorf("FetchStatuses(%s %v) returned %v, which it must omit", what, in, st)
			case st.State != w:
				e.t.Errorf("FetchStatuses(%s %v): job %d is %s, want %s", what, in, st.ID, st.State, w)
			}
		}
		for id := range want {
			if !seen[id] {
				e.t.Errorf("FetchStatuses(%s %v) omitted known job %d (%s)", what, in, id, want[id])
			}
		}
	}
	check("all states", ids, want)
	check("nil", nil, nil)
	check("empty", []jobwatch.JobID{}, nil)
	check("duplicates", []jobwatch.JobID{q, q, s, q, s}, map[jobwatch.JobID]sm.State{q: sm.Queued, s: sm.Successful})
	check("unknown", []jobwatch.JobID{0, -1, unknown, q, unknown}, map[jobwatch.JobID]sm.State{q: sm.Queued})
	check("only unknown", []jobwatch.JobID{0, -1, unknown}, nil)

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	ch := make(chan error, 1)
	go func() {
		_, err := e.raw.FetchStatuses(ctx, []jobwatch.JobID{q, p})
		ch <- err
	}()
	if err := recvWithin(e, (<-chan error)(ch), slack, "FetchStatuses with a cancelled ctx"); err == nil {
		e.t.Errorf("FetchStatuses with a cancelled ctx succeeded, want an error")
	}
}

// Rule: the backend refuses an illegal transition with an error matching
// statemachine.ErrIllegalTransition and changes nothing, not even the
// legal part of the same transaction; a transition of an unknown job fails
// too.
func caseIllegal(e *env) {
	ids := e.enqueue(3)
	q, p, s := ids[0], ids[1], ids[2]
	e.apply(sm.Claim, p, s)
	e.apply(sm.Complete, s)
	const unknown = jobwatch.JobID(1 << 50)

	tryApply := func(ev sm.Event, ids ...jobwatch.JobID) error {
		ctx, cancel := e.op()
		defer cancel()
		return e.h.Apply(ctx, ev, ids...)
	}
	illegal := func(what string, ev sm.Event, ids ...jobwatch.JobID) {
		e.t.Helper()
		if err := tryApply(ev, ids...); !errors.Is(err, sm.ErrIllegalTransition) {
			e.t.Errorf("Apply(%s) to %s: %v, want an error matching statemachine.ErrIllegalTransition", ev, what, err)
		}
	}
	illegal("a queued job", sm.Complete, q)
	illegal("a queued job", sm.Requeue, q)
	illegal("a queued job", sm.Hold, q)
	illegal("a successful job", sm.Claim, s)
	illegal("a successful job", sm.Delete, s)
	illegal("a picked job and a queued job in one transaction", sm.Complete, p, q)
	illegal("a queued job and a successful job in one transaction", sm.Claim, q, s)
	if err := tryApply(sm.Claim, unknown); err == nil {
		e.t.Errorf("Apply(claim) to an unknown job succeeded, want an error")
	}
	if err := tryApply(sm.Claim, q, unknown); err == nil {
		e.t.Errorf("Apply(claim) to a queued job and an unknown job in one transaction succeeded, want an error")
	}

	got := e.fetch(q, p, s)
	want := map[jobwatch.JobID]sm.State{q: sm.Queued, p: sm.Picked, s: sm.Successful}
	for id, w := range want {
		if got[id] != w {
			e.t.Errorf("after refused transitions job %d is %s, want %s (nothing may change)", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		e.t.Errorf("after refused transitions FetchStatuses returned %d statuses, want %d", len(got), len(want))
	}
}
