package jobwatch

import (
	"context"
	"time"

	"github.com/jobwatch/jobwatch/statemachine"
)

// runScheduler is the only goroutine that reads statuses. Reads are
// serialised, so requests arriving during a read coalesce into the next one.
func (w *Watcher) runScheduler(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.mu.Lock()
		next := w.sched.next()
		w.mu.Unlock()
		resetTimer(timer, time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
		w.step(ctx, time.Now())
	}
}

// resetTimer re-arms t to fire after d, whatever state it was in.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(max(d, 0))
}

// step runs the read that is due, if any.
func (w *Watcher) step(ctx context.Context, now time.Time) {
	w.mu.Lock()
	w.sched.tick(now)
	plan, ok := w.sched.take(now, w.pending)
	if plan.dropCursor || (!ok && len(w.pending) == 0) {
		w.cursor = nil // nobody waits: start afresh rather than replay idle history
	}
	w.mu.Unlock()
	if ok {
		w.read(ctx, plan)
	}
}

// read runs plan: the change feed first when asked (starting one if need be),
// then ids in batches, settling what it finds. On failure the unread part
// goes back into the schedule behind a backoff.
func (w *Watcher) read(ctx context.Context, plan readPlan) {
	if w.feed != nil && plan.feed != causeNone {
		fresh := w.cursor == nil
		partial, ok := w.readFeed(ctx, plan)
		if !ok {
			return
		}
		// A fresh cursor covers only what comes after it: every pending
		// job is read once after it, and from then on the feed is enough.
		if (partial || fresh) && !plan.all {
			plan = w.widen(plan)
		}
	}
	for start := 0; start < len(plan.ids); start += w.cfg.batchSize {
		batch := plan.ids[start:min(start+w.cfg.batchSize, len(plan.ids))]
		statuses, err := w.fetch(ctx, batch)
		now := time.Now()
		w.mu.Lock()
		w.stats.Reads.add(plan.why, 1)
		w.stats.IDsRead += uint64(len(batch))
		if err != nil {
			w.stats.ReadErrors++
			w.sched.failed(now, plan, plan.ids[start:], w.cfg.backoffMin, w.cfg.backoffMax)
			w.mu.Unlock()
			if ctx.Err() == nil {
				w.recordError("jobwatch: status read failed", err, "ids", len(batch))
			}
			return
		}
		w.settle(batch, statuses, plan.why, now)
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.sched.succeeded()
	w.mu.Unlock()
}

// fetch is one FetchStatuses call, bounded by the call timeout.
func (w *Watcher) fetch(ctx context.Context, ids []JobID) ([]Status, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.callTimeout)
	defer cancel()
	return w.driver.FetchStatuses(ctx, ids)
}

// readFeed reads the change feed from the cursor and settles the pending
// jobs it names. It reports whether the feed was partial, and false for ok
// when the read failed (then the plan is rescheduled).
func (w *Watcher) readFeed(ctx context.Context, plan readPlan) (partial, ok bool) {
	why := max(plan.feed, plan.why)
	callCtx, cancel := context.WithTimeout(ctx, w.cfg.callTimeout)
	cs, err := w.feed.Changes(callCtx, w.cursor)
	cancel()
	now := time.Now()
	w.mu.Lock()
	w.stats.Reads.add(why, 1)
	if err != nil {
		w.stats.ReadErrors++
		plan.feed = why
		w.sched.failed(now, plan, plan.ids, w.cfg.backoffMin, w.cfg.backoffMax)
		w.mu.Unlock()
		if ctx.Err() == nil {
			w.recordError("jobwatch: change feed read failed", err)
		}
		return false, false
	}
	w.cursor = cs.Cursor
	w.stats.ChangesRead += uint64(len(cs.Statuses))
	for _, st := range cs.Statuses {
		w.note(st, why)
	}
	w.mu.Unlock()
	return cs.Partial, true
}

// widen turns plan into a read of every pending job: the feed could not
// vouch for what happened before its cursor.
func (w *Watcher) widen(plan readPlan) readPlan {
	w.mu.Lock()
	defer w.mu.Unlock()
	plan.all, plan.why = true, max(plan.why, plan.feed)
	plan.ids = plan.ids[:0]
	for id := range w.pending {
		plan.ids = append(plan.ids, id)
	}
	return plan
}

// note records a status read for a pending job, resolving its waits when
// the state settles them. Called with w.mu held.
func (w *Watcher) note(st Status, why cause) {
	e := w.pending[st.ID]
	if e == nil {
		return
	}
	e.found = true
	delete(w.sched.unseen, st.ID)
	if w.settles(st.State) {
		w.resolve(e, st.State, nil, why)
	}
}

// settle resolves the waits a read decides: settled states, and ids still
// unknown after their grace. Called with w.mu held.
func (w *Watcher) settle(batch []JobID, statuses []Status, why cause, now time.Time) {
	for _, st := range statuses {
		w.note(st, why)
	}
	for _, id := range batch {
		e := w.pending[id]
		switch {
		case e == nil || e.found:
		case !now.Before(e.deadline):
			w.resolve(e, statemachine.None, ErrNotFound, why)
		default:
			w.sched.noteUnseen(id, e.deadline)
		}
	}
}
