package jobwatch

import (
	"context"
	"errors"
	"time"
)

// runScheduler is the only goroutine that reads statuses and the only one
// that touches the change feed's cursor. Reads are serialised, so requests
// arriving during a read coalesce into the next one.
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

// step runs the one read that is due, if any: a quick read first, else the
// next chunk of a full read.
func (w *Watcher) step(ctx context.Context, now time.Time) {
	w.mu.Lock()
	w.expire(w.sched.tick(now, w.vouching() && w.wantFeed()), now)
	// Nobody waits, or few enough to read by id: start afresh later rather
	// than replay idle history. Not while a full read's findings wait for
	// the feed read that confirms them.
	if (len(w.pending) == 0 || w.sched.dropCursor) && w.cursor != nil && len(w.suspects) == 0 {
		w.dropCursor()
	}
	w.sched.dropCursor = false
	plan, ok := w.sched.takeQuick(now, w.pending)
	plan, ok = w.feedPlan(now, plan, ok)
	gen := w.gen
	if ok {
		w.mu.Unlock()
		w.readQuick(ctx, plan, gen)
		return
	}
	if f := w.sched.startFull(now, w.pending); f != nil {
		f.partial, f.vouched = w.partials, w.vouching()
		w.stats.FullReads++
	}
	ids, f, ok := w.sched.takeChunk(now, w.cfg.batchSize)
	w.mu.Unlock()
	if ok {
		w.readChunk(ctx, f, ids, gen)
	}
}

// feedPlan decides the change feed's part of a quick read. The feed serves
// only above the feed threshold; a feed that is failing is skipped and its
// read becomes a full read (the core path never waits for the feed). A
// read that needs the feed but has no cursor starts one first, so that the
// read of every pending job it needs anyway also covers the feed's past.
// Called with w.mu held.
func (w *Watcher) feedPlan(now time.Time, plan quickPlan, ok bool) (quickPlan, bool) {
	if len(w.suspects) > 0 && plan.feed != causeNone && w.cursor != nil && !w.feedFailing(now) {
		return plan, true // the read that confirms a full read's findings
	}
	if !w.wantFeed() || w.feedFailing(now) {
		if plan.feed != causeNone {
			w.sched.markAll(plan.feed) // what the feed would have served
			plan.feed = causeNone
		}
		return plan, ok && len(plan.ids) > 0
	}
	if w.cursor == nil && (ok || w.sched.all != causeNone) {
		plan.feed = max(plan.feed, causeWait)
		plan.why = max(plan.why, plan.feed)
		ok = true
	}
	return plan, ok
}

// wantFeed says whether notifications are served by the change feed: with
// few pending jobs, reading them by id is cheaper. Called with w.mu held.
func (w *Watcher) wantFeed() bool {
	return w.feed != nil && len(w.pending) > w.cfg.feedThreshold
}

// feedFailing says whether the change feed is backing off after a failure.
// Called with w.mu held.
func (w *Watcher) feedFailing(now time.Time) bool {
	return w.feedFailures > 0 && now.Before(w.feedUntil)
}

// vouching says whether the change feed can stand in for a read of every
// pending job: it has a cursor, its last read worked, and the full read
// owed since it last reported Partial has ended. Called with w.mu held.
func (w *Watcher) vouching() bool {
	return w.feed != nil && w.cursor != nil && !w.owed && w.feedFailures == 0
}

// dropCursor abandons the change feed's cursor: what the feed said before
// cannot be relied on after it. Called with w.mu held, by the scheduler
// goroutine.
func (w *Watcher) dropCursor() {
	w.cursor = nil
	w.owed = false
	w.lostCoverage()
}

// lostCoverage starts a new epoch: jobs observed before it may have
// changes the feed will not report, so a full read that settles them has
// not found a missed change. Called with w.mu held.
func (w *Watcher) lostCoverage() {
	w.epoch++
	w.suspects = nil
}

// readQuick runs plan: the change feed first when asked, then ids in
// batches. A feed that fails does not stop the ids being read.
func (w *Watcher) readQuick(ctx context.Context, plan quickPlan, gen uint64) {
	if plan.feed != causeNone {
		if partial := w.readFeed(ctx, plan.feed, gen); partial {
			// The full read the feed asked for covers these ids too.
			plan.ids = nil
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
			w.sched.failedQuick(now, plan.ids[start:], plan.why, w.cfg.backoffMin, w.cfg.backoffMax)
			w.readFailed(err, batch, gen, now)
			w.mu.Unlock()
			w.logReadError(ctx, "jobwatch: status read failed", err, len(batch))
			return
		}
		w.readWorked()
		w.settle(batch, statuses, plan.why, now, gen, false)
		w.mu.Unlock()
	}
	if len(plan.ids) > 0 {
		w.mu.Lock()
		w.sched.succeeded()
		w.mu.Unlock()
	}
}

// readChunk reads one chunk of the full read f.
func (w *Watcher) readChunk(ctx context.Context, f *fullRead, ids []JobID, gen uint64) {
	statuses, err := w.fetch(ctx, ids)
	now := time.Now()
	w.mu.Lock()
	w.stats.Reads.add(f.why, 1)
	w.stats.IDsRead += uint64(len(ids))
	if err != nil {
		w.sched.backOff(now, w.cfg.backoffMin, w.cfg.backoffMax)
		w.readFailed(err, ids, gen, now)
		w.mu.Unlock()
		w.logReadError(ctx, "jobwatch: status read failed", err, len(ids))
		return
	}
	w.sched.succeeded()
	w.readWorked()
	suspects := len(w.suspects)
	w.settle(ids, statuses, f.why, now, gen, f.vouched && w.vouching())
	if len(w.suspects) > suspects {
		// Ask the feed now whether it knows of these changes.
		w.sched.markFeed(f.why)
		w.sched.request(now, 0, true)
	}
	if w.sched.chunkDone(f, len(ids)) && f.partial == w.partials {
		w.owed = false // a full read made after the last Partial has ended
	}
	w.mu.Unlock()
}

// fetch is one FetchStatuses call, bounded by the call timeout.
func (w *Watcher) fetch(ctx context.Context, ids []JobID) ([]Status, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.callTimeout)
	defer cancel()
	return w.driver.FetchStatuses(ctx, ids)
}

// readFeed reads the change feed from the cursor (starting one when there
// is none) and settles the pending jobs it names. It reports whether the
// change set was Partial: a full read is then asked for. A failure backs
// the feed off on its own and asks for a full read instead, so whatever
// this read was for is still served.
func (w *Watcher) readFeed(ctx context.Context, why cause, gen uint64) (partial bool) {
	fresh := w.cursor == nil
	callCtx, cancel := context.WithTimeout(ctx, w.cfg.callTimeout)
	cs, err := w.feed.Changes(callCtx, w.cursor)
	cancel()
	now := time.Now()
	w.mu.Lock()
	w.stats.Reads.add(why, 1)
	w.stats.FeedReads++
	if err != nil {
		w.stats.FeedReadErrors++
		w.feedFailures++
		w.feedUntil = now.Add(backoff(w.feedFailures, w.cfg.backoffMin, w.cfg.backoffMax))
		w.sched.retryFeed(w.feedUntil, why)
		w.sched.markAll(why)
		w.readFailed(err, nil, gen, now)
		w.mu.Unlock()
		w.logReadError(ctx, "jobwatch: change feed read failed", err, 0)
		return false
	}
	w.feedFailures, w.feedUntil = 0, time.Time{}
	w.sched.retryFeed(time.Time{}, causeNone)
	w.readWorked()
	w.cursor = cs.Cursor
	w.stats.ChangesRead += uint64(len(cs.Statuses))
	w.stats.SkippedChanges += uint64(max(cs.Skipped, 0))
	// A Partial change set disclaims what came before it: it can neither
	// confirm nor deny what a full read found, and the full read it asks
	// for starts a new epoch.
	var missed []JobID
	if cs.Partial || fresh {
		w.suspects = nil
	} else {
		missed = w.confirmSuspects(cs.Statuses)
	}
	for _, st := range cs.Statuses {
		w.note(st, why, gen, false)
	}
	// A fresh cursor knows nothing of what came before it, whatever the
	// feed says.
	cs.Partial = cs.Partial || fresh
	if cs.Partial {
		w.partials++
		w.owed = true
		w.lostCoverage()
		w.sched.markAll(why)
	}
	w.mu.Unlock()
	if len(missed) > 0 {
		w.cfg.logger.Warn("jobwatch: the change feed missed changes that a full read found (a bug in the driver's feed)",
			"jobs", len(missed), "first", int64(missed[0]))
	}
	return cs.Partial
}

// confirmSuspects decides the jobs a full read settled while the feed
// vouched: the feed read after it must name each of them, because their
// change was committed after they were last seen. Those it does not name
// were missed. Called with w.mu held.
func (w *Watcher) confirmSuspects(statuses []Status) (missed []JobID) {
	if len(w.suspects) == 0 {
		return nil
	}
	named := make(map[JobID]struct{}, len(statuses))
	for _, st := range statuses {
		named[st.ID] = struct{}{}
	}
	for _, id := range w.suspects {
		if _, ok := named[id]; !ok {
			missed = append(missed, id)
		}
	}
	w.suspects = nil
	w.stats.MissedChanges += uint64(len(missed))
	return missed
}

// note records a status read for a pending job, resolving its waits when
// the state settles them. A read that began before the job's wait was
// registered (gen) decides nothing: the wait's own read follows. suspect
// says the read was a full read while the feed vouched: a job it settles
// is checked against the next feed read. Called with w.mu held.
func (w *Watcher) note(st Status, why cause, gen uint64, suspect bool) {
	e := w.pending[st.ID]
	if e == nil || e.gen > gen {
		return
	}
	e.found = true
	e.last = st.State
	delete(w.sched.unseen, st.ID)
	if !w.settles(st.State) {
		e.observed = w.epoch
		return
	}
	if suspect && e.observed == w.epoch {
		w.suspects = append(w.suspects, st.ID)
	}
	w.resolve(e, st.State, nil, why)
}

// settle resolves the waits a read by id decides: settled states, and ids
// still unknown after their grace. Called with w.mu held.
func (w *Watcher) settle(batch []JobID, statuses []Status, why cause, now time.Time, gen uint64, suspect bool) {
	for _, st := range statuses {
		w.note(st, why, gen, suspect)
	}
	for _, id := range batch {
		e := w.pending[id]
		switch {
		case e == nil || e.gen > gen || e.found:
		case !now.Before(e.deadline):
			w.resolve(e, e.last, ErrNotFound, why)
		default:
			e.observed = w.epoch
			w.sched.noteUnseen(id, e.deadline)
		}
	}
}

// expire handles jobs whose not-found grace ended: while the queue is not
// installed they end with that error; otherwise they are read once more.
// Called with w.mu held.
func (w *Watcher) expire(ids []JobID, now time.Time) {
	for _, id := range ids {
		e := w.pending[id]
		switch {
		case e == nil:
		case w.notInstalled != nil:
			w.resolve(e, e.last, w.notInstalled, causeWait)
		default:
			w.sched.markID(id, causeWait)
			w.sched.request(now, 0, true)
		}
	}
}

// readFailed records a failed read of ids (nil for a feed read). When the
// queue is not installed, the waits among ids whose grace has ended end
// with that error, and the others are checked again at their deadline.
// Called with w.mu held.
func (w *Watcher) readFailed(err error, ids []JobID, gen uint64, now time.Time) {
	if w.closed {
		return // the read was cut short by Close: not the database's doing
	}
	w.stats.ReadErrors++
	w.readErr = err
	if !errors.Is(err, ErrNotInstalled) {
		return
	}
	w.notInstalled = err
	for _, id := range ids {
		e := w.pending[id]
		switch {
		case e == nil || e.gen > gen:
		case !now.Before(e.deadline):
			w.resolve(e, e.last, err, causeWait)
		default:
			w.sched.noteUnseen(id, e.deadline)
		}
	}
}

// readWorked clears what failed reads recorded. Called with w.mu held.
func (w *Watcher) readWorked() {
	w.readErr = nil
	w.notInstalled = nil
}

// logReadError records err for Stats and logs it, unless the Watcher is
// stopping. Called without w.mu held.
func (w *Watcher) logReadError(ctx context.Context, msg string, err error, ids int) {
	if ctx.Err() != nil {
		return
	}
	if ids > 0 {
		w.recordError(msg, err, "ids", ids)
		return
	}
	w.recordError(msg, err)
}
