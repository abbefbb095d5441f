package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// midReadJobs is how many jobs case 20 reads: enough for a result of many
// rows, so that a stall after the first ones is in the middle of it.
const midReadJobs = 300

type fetchResult struct {
	st  []jobwatch.Status
	err error
}

func goFetch(ctx context.Context, d jobwatch.Driver, ids []jobwatch.JobID) <-chan fetchResult {
	ch := make(chan fetchResult, 1)
	go func() {
		st, err := d.FetchStatuses(ctx, ids)
		ch <- fetchResult{st, err}
	}()
	return ch
}

// stallReads starts a stall through the harness; it is released when the
// case ends at the latest.
func (e *env) stallReads() (stalled <-chan struct{}, release func()) {
	e.t.Helper()
	ctx, cancel := e.op()
	defer cancel()
	stalled, release, err := e.h.(ReadStaller).StallReads(ctx)
	if err != nil {
		e.t.Fatalf("ReadStaller.StallReads: %v", err)
	}
	e.t.Cleanup(func() {
		e.boundedCleanup("the release of a ReadStaller stall", func() error { release(); return nil })
	})
	return stalled, release
}

// Rule: a ctx that ends while FetchStatuses is in the middle of reading its
// result (some rows read, the rest stalled) makes it return an error, never
// the rows read so far, and promptly (within slack of the cancel, although
// the stalled rows never come); a stalled read that is let go returns the
// whole result; and the backend reads normally afterwards.
func caseFetchCancelMidRead(e *env) {
	ids := e.enqueue(midReadJobs)
	e.apply(sm.Claim, ids[:midReadJobs/2]...)
	want := make(map[jobwatch.JobID]sm.State, len(ids))
	for i, id := range ids {
		want[id] = sm.Queued
		if i < midReadJobs/2 {
			want[id] = sm.Picked
		}
	}

	// Cancelled in the middle of the read.
	stalled, release := e.stallReads()
	ctx, cancel := e.op()
	defer cancel()
	ch := goFetch(ctx, e.raw, ids)
	select {
	case <-stalled:
	case r := <-ch:
		e.t.Fatalf("FetchStatuses returned (%d statuses, error %v) although the harness stalled its read: the harness's StallReads does not stall this backend's reads", len(r.st), r.err)
	case <-time.After(e.timeout):
		e.t.Fatalf("the harness's StallReads did not report a stalled read within %s", e.timeout)
	}
	cancel()
	r := recvWithin(e, ch, slack, "FetchStatuses whose ctx was cancelled in the middle of its read")
	switch {
	case r.err == nil:
		e.t.Errorf("FetchStatuses whose ctx was cancelled in the middle of its read returned %d of %d statuses and no error: a partial result as success (check rows.Err after the loop)", len(r.st), len(ids))
	case len(r.st) != 0:
		e.t.Errorf("FetchStatuses whose ctx was cancelled in the middle of its read returned %d statuses with its error %v; want none", len(r.st), r.err)
	default:
		e.t.Logf("FetchStatuses cancelled in the middle of its read: %v", r.err)
	}
	release()

	// Let go: the whole result.
	stalled, release = e.stallReads()
	ctx2, cancel2 := e.op()
	defer cancel2()
	ch = goFetch(ctx2, e.raw, ids)
	select {
	case <-stalled:
	case <-time.After(e.timeout):
		e.t.Fatalf("the harness's StallReads did not report a stalled read within %s", e.timeout)
	case r := <-ch:
		e.t.Fatalf("FetchStatuses returned (%d statuses, error %v) although the harness stalled its read", len(r.st), r.err)
	}
	release()
	r = recv(e, ch, "FetchStatuses let go after a stall")
	e.checkStatuses("FetchStatuses let go after a stall", r, want)

	// And afterwards, without a stall.
	ctx3, cancel3 := e.op()
	defer cancel3()
	r = recv(e, goFetch(ctx3, e.raw, ids), "FetchStatuses after the stalled reads")
	e.checkStatuses("FetchStatuses after the stalled reads", r, want)
}

// checkStatuses checks that r holds exactly want, each id once.
func (e *env) checkStatuses(what string, r fetchResult, want map[jobwatch.JobID]sm.State) {
	e.t.Helper()
	if r.err != nil {
		e.t.Errorf("%s: %v", what, r.err)
		return
	}
	if err := statusesMatch(r.st, want); err != nil {
		e.t.Errorf("%s: %v", what, err)
	}
}

// statusesMatch says how got differs from want (each id once, with its
// state, nothing else), or nil.
func statusesMatch(got []jobwatch.Status, want map[jobwatch.JobID]sm.State) error {
	seen := make(map[jobwatch.JobID]bool, len(got))
	for _, st := range got {
		w, ok := want[st.ID]
		switch {
		case seen[st.ID]:
			return fmt.Errorf("job %d returned twice", st.ID)
		case !ok:
			return fmt.Errorf("returned %v, which was not asked for", st)
		case st.State != w:
			return fmt.Errorf("job %d is %s, want %s", st.ID, st.State, w)
		}
		seen[st.ID] = true
	}
	if len(seen) != len(want) {
		return fmt.Errorf("returned %d statuses, want %d", len(seen), len(want))
	}
	return nil
}

// Rule: a Next whose ctx ended (by its deadline or by a cancel, while it
// was blocked) leaves the subscription usable: Next called again on the
// same subscription delivers a change committed after that, every time.
func caseNextAfterTimeout(e *env) {
	sub := e.listen()
	const short = 100 * time.Millisecond
	for i := 0; i < 4; i++ {
		// Nothing commits; tolerate a few notifications the backend may
		// send by itself (probes) before the ctx ends.
		var ctx context.Context
		var cancel context.CancelFunc
		how := "expired"
		if i%2 == 0 {
			ctx, cancel = context.WithTimeout(e.ctx, short)
		} else {
			how = "cancelled"
			ctx, cancel = context.WithCancel(e.ctx)
		}
		for extra := 0; ; extra++ {
			wctx := watchDone(ctx)
			ch := goNext(wctx, sub)
			if how == "cancelled" {
				// Cancel once Next waits on its ctx.
				select {
				case <-wctx.asked:
				case <-time.After(e.timeout):
					e.t.Fatalf("Next did not look at its ctx within %s", e.timeout)
				}
				cancel()
			}
			r, ok := e.awaitNext(sub, ch, short+slack)
			if !ok {
				e.t.Fatalf("iteration %d: Next did not return within %s of its ctx ending", i, slack)
			}
			if r.err != nil {
				if !errors.Is(r.err, ctx.Err()) {
					e.t.Errorf("iteration %d: Next with an %s ctx: %v, want an error matching %v", i, how, r.err, ctx.Err())
				}
				break
			}
			if extra >= 10 {
				e.t.Fatalf("iteration %d: Next kept returning notifications although nothing committed", i)
			}
		}
		cancel()

		e.enqueue(1) // commits after the Next that ended
		ctx, cancel = e.op()
		r, ok := e.awaitNext(sub, goNext(ctx, sub), e.timeout+slack)
		cancel()
		if !ok || r.err != nil {
			e.t.Fatalf("iteration %d: after a Next whose ctx %s, Next on the same subscription did not deliver a change committed afterwards within %s (err %v): the subscription lost it", i, how, e.timeout, r.err)
		}
	}
}

// Rule: each FetchStatuses result belongs to its caller: neither a later
// call nor concurrent ones, asking for other ids, change a result already
// returned; concurrent calls with different id sets each get exactly their
// own statuses.
func caseFetchIndependent(e *env) {
	const readers = 8
	ids := e.enqueue(readers * 4)
	e.apply(sm.Claim, ids[:len(ids)/2]...)
	state := func(id jobwatch.JobID) sm.State {
		for _, x := range ids[:len(ids)/2] {
			if x == id {
				return sm.Picked
			}
		}
		return sm.Queued
	}
	// Reader i asks for its own four ids, plus one unknown id of its own.
	sets := make([][]jobwatch.JobID, readers)
	wants := make([]map[jobwatch.JobID]sm.State, readers)
	for i := range sets {
		sets[i] = append([]jobwatch.JobID(nil), ids[i*4:i*4+4]...)
		wants[i] = map[jobwatch.JobID]sm.State{}
		for _, id := range sets[i] {
			wants[i][id] = state(id)
		}
		sets[i] = append(sets[i], jobwatch.JobID(1<<50+i))
	}

	// One after the other, every result kept and checked at the end.
	kept := make([][]jobwatch.Status, readers)
	for i := range sets {
		ctx, cancel := e.op()
		st, err := e.raw.FetchStatuses(ctx, sets[i])
		cancel()
		if err != nil {
			e.t.Fatalf("FetchStatuses(%v): %v", sets[i], err)
		}
		kept[i] = st
	}
	for i := range kept {
		if err := statusesMatch(kept[i], wants[i]); err != nil {
			e.t.Errorf("the result of FetchStatuses(%v), checked after %d later calls for other ids: %v (a result must not share memory with later ones)", sets[i], readers-1-i, err)
		}
	}

	// Concurrently, several rounds; results checked once all are back.
	const rounds = 4
	results := make([][]fetchResult, rounds)
	var wg sync.WaitGroup
	for round := range results {
		results[round] = make([]fetchResult, readers)
		for i := range sets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := e.op()
				defer cancel()
				st, err := e.raw.FetchStatuses(ctx, sets[i])
				results[round][i] = fetchResult{st, err}
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	recv(e, (<-chan struct{})(done), "concurrent FetchStatuses")
	for round := range results {
		for i, r := range results[round] {
			e.checkStatuses(fmt.Sprintf("concurrent FetchStatuses(%v), round %d, checked once all were back", sets[i], round), r, wants[i])
		}
	}
}
