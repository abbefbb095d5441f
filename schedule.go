package jobwatch

import "time"

// schedule decides what the next status read covers and when it runs. It
// is plain data guarded by Watcher.mu; the scheduler goroutine acts on it.
//
// There are two kinds of read. A quick read is what a wait, a notification
// or a poll asks for: the change feed, and marked ids by id. A full read
// re-reads every pending job, in chunks of one batch; it runs only while no
// quick read is due, so a notification never waits behind it for more than
// one chunk.
type schedule struct {
	// Marks of the next quick read.
	feed     cause              // non-zero: read the change feed
	ids      map[JobID]struct{} // these ids, by id
	idsCause cause              // the strongest cause among ids
	dueAt    time.Time          // when the quick read runs; zero: none asked for
	lastRead time.Time          // when the latest quick read started
	// dropCursor asks the scheduler to abandon the feed's cursor: few jobs
	// are pending, they are read by id, and the cursor would go stale.
	dropCursor bool

	// Full reads.
	all       cause     // non-zero: a full read is asked for
	full      *fullRead // the one in progress, if any
	again     cause     // non-zero: another pass is asked for once full ends
	lastFull  time.Time // when the latest full read started
	fullLimit time.Duration

	// Failed by-id reads (quick or full) back off together: they meet the
	// same database.
	retryAt  time.Time
	failures int

	// feedRetry is when a failed change feed is tried again (for the
	// cause of the read that failed); zero: not failing.
	feedRetry    time.Time
	feedRetryWhy cause

	// Timers.
	refresh   time.Duration       // safety-net poll period
	fullEvery time.Duration       // full-read period, even while the feed vouches
	pollAt    time.Time           // next poll
	fullAt    time.Time           // next periodic full read
	unseen    map[JobID]time.Time // read but not found yet: id -> grace deadline
	graceAt   time.Time           // earliest deadline in unseen; zero: none
}

// fullRead is a read of every job that was pending when it started.
type fullRead struct {
	ids     []JobID // not read yet
	why     cause
	partial uint64 // Watcher.partials when it started: see Watcher.vouching
	vouched bool   // the feed vouched when it started: what it settles was missed
}

// quickPlan is one quick read: the change feed (when feed is set), then
// ids by id.
type quickPlan struct {
	feed cause
	ids  []JobID
	why  cause
}

// newSchedule starts the timers. Full reads start at most once per
// fullLimit (the debounce), so that a flood of requests for them (a
// subscription whose buffer keeps overflowing) costs one per window.
func newSchedule(now time.Time, refresh, fullEvery, fullLimit time.Duration) schedule {
	return schedule{
		fullLimit: fullLimit,
		ids:       make(map[JobID]struct{}),
		unseen:    make(map[JobID]time.Time),
		refresh:   refresh,
		fullEvery: fullEvery,
		pollAt:    now.Add(jitter(refresh, 0.1)),
		fullAt:    now.Add(jitter(fullEvery, 0.1)),
	}
}

// markID asks for id in the next quick read.
func (s *schedule) markID(id JobID, why cause) {
	s.ids[id] = struct{}{}
	s.idsCause = max(s.idsCause, why)
}

// markFeed asks for the change feed in the next quick read.
func (s *schedule) markFeed(why cause) { s.feed = max(s.feed, why) }

// markAll asks for a full read. One that is running already started before
// this request, so it cannot answer it: another pass follows it. A poll is
// the exception: any full read that ends after it is as good.
func (s *schedule) markAll(why cause) {
	switch {
	case s.full == nil:
		s.all = max(s.all, why)
	case why != causePoll:
		s.again = max(s.again, why)
	}
}

// request asks for a quick read within debounce of the first request not
// yet served, so a burst of requests makes one read. An urgent request
// (loss to repair) reads at once, unless a read started less than debounce
// ago: then at the end of that window, so a flood of urgent requests still
// costs at most one read per window.
func (s *schedule) request(now time.Time, debounce time.Duration, urgent bool) {
	at := now.Add(debounce)
	if urgent {
		at = latest(s.lastRead.Add(debounce), now)
	}
	if s.dueAt.IsZero() || at.Before(s.dueAt) {
		s.dueAt = at
	}
}

// forget drops every trace of an id nobody waits for any more. A full read
// in progress keeps it in its list: reading it costs little, and a later
// wait on the same id is then read too.
func (s *schedule) forget(id JobID) {
	delete(s.ids, id)
	delete(s.unseen, id)
}

// reset replaces the per-id maps once nothing is pending (see
// Watcher.forget) and drops a full read: there is nothing left to read.
func (s *schedule) reset() {
	s.ids = make(map[JobID]struct{})
	s.unseen = make(map[JobID]time.Time)
	s.graceAt = time.Time{}
	s.all, s.again, s.full = causeNone, causeNone, nil
}

// next is when the scheduler must wake up next. A zero time means now.
func (s *schedule) next() time.Time {
	t := earliest(s.pollAt, s.fullAt)
	for _, at := range []time.Time{s.graceAt, s.feedRetry} {
		if !at.IsZero() {
			t = earliest(t, at)
		}
	}
	if !s.dueAt.IsZero() {
		t = earliest(t, latest(s.dueAt, s.retryAt))
	}
	switch {
	case s.full != nil:
		t = earliest(t, s.retryAt) // a full read goes on whenever no quick read is due
	case s.all != causeNone:
		t = earliest(t, latest(s.retryAt, s.lastFull.Add(s.fullLimit)))
	}
	return t
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tick turns a due poll or full-read deadline into requests, and returns
// the ids whose not-found grace ended (the Watcher decides what to do with
// them). vouching says whether the change feed can stand in for a full
// read at the poll.
func (s *schedule) tick(now time.Time, vouching bool) (expired []JobID) {
	if !s.pollAt.After(now) {
		if vouching {
			s.markFeed(causePoll)
			s.request(now, 0, true)
		} else {
			s.markAll(causePoll)
		}
		s.pollAt = now.Add(jitter(s.refresh, 0.1))
	}
	if !s.fullAt.After(now) {
		s.markAll(causePoll)
		s.fullAt = now.Add(jitter(s.fullEvery, 0.1))
	}
	if !s.feedRetry.IsZero() && !s.feedRetry.After(now) {
		s.feedRetry = time.Time{}
		s.markFeed(s.feedRetryWhy)
		s.request(now, 0, true)
	}
	if s.graceAt.IsZero() || s.graceAt.After(now) {
		return nil
	}
	s.graceAt = time.Time{}
	for id, deadline := range s.unseen {
		if deadline.After(now) {
			s.noteUnseen(id, deadline)
			continue
		}
		delete(s.unseen, id)
		expired = append(expired, id)
	}
	return expired
}

// noteUnseen remembers that id was not found and must be re-read at its
// grace deadline.
func (s *schedule) noteUnseen(id JobID, deadline time.Time) {
	s.unseen[id] = deadline
	if s.graceAt.IsZero() || deadline.Before(s.graceAt) {
		s.graceAt = deadline
	}
}

// takeQuick returns the quick read that is due now, if any, and clears the
// marks it covers. Only ids still pending are read.
func (s *schedule) takeQuick(now time.Time, pending map[JobID]*entry) (quickPlan, bool) {
	if s.dueAt.IsZero() || s.dueAt.After(now) || s.retryAt.After(now) {
		return quickPlan{}, false
	}
	s.dueAt = time.Time{}
	plan := quickPlan{feed: s.feed, why: max(s.idsCause, s.feed)}
	for id := range s.ids {
		if pending[id] != nil {
			plan.ids = append(plan.ids, id)
		}
	}
	s.feed, s.idsCause = causeNone, causeNone
	clear(s.ids)
	if len(plan.ids) == 0 && plan.feed == causeNone {
		return quickPlan{}, false
	}
	s.lastRead = now
	return plan, true
}

// startFull begins the full read asked for, if any and none is running:
// every id pending now. The caller fills in what it knows of the feed.
func (s *schedule) startFull(now time.Time, pending map[JobID]*entry) *fullRead {
	if s.full != nil || s.all == causeNone || now.Before(s.lastFull.Add(s.fullLimit)) {
		return nil
	}
	if len(pending) == 0 {
		s.all = causeNone
		return nil
	}
	f := &fullRead{why: s.all, ids: make([]JobID, 0, len(pending))}
	for id := range pending {
		f.ids = append(f.ids, id)
	}
	s.all = causeNone
	s.full = f
	s.lastFull = now
	// Ids marked for a quick read are in it: reading them twice is waste.
	clear(s.ids)
	s.idsCause = causeNone
	return f
}

// takeChunk returns the next chunk of the full read in progress, if one is
// running and no backoff holds it.
func (s *schedule) takeChunk(now time.Time, size int) ([]JobID, *fullRead, bool) {
	if s.full == nil || s.retryAt.After(now) {
		return nil, nil, false
	}
	n := min(size, len(s.full.ids))
	return s.full.ids[:n], s.full, true
}

// chunkDone removes a chunk that was read from f, and ends f when it is
// the last. It reports whether f ended.
func (s *schedule) chunkDone(f *fullRead, n int) bool {
	if s.full != f {
		return false // dropped meanwhile (nothing pending)
	}
	f.ids = f.ids[n:]
	if len(f.ids) > 0 {
		return false
	}
	s.full = nil
	if s.again != causeNone {
		s.all, s.again = s.again, causeNone
	}
	return true
}

// failedQuick puts back the ids of a quick read that were not read, and
// backs off.
func (s *schedule) failedQuick(now time.Time, unread []JobID, why cause, min, max time.Duration) {
	for _, id := range unread {
		s.markID(id, why)
	}
	s.backOff(now, min, max)
	s.request(now, 0, true)
}

// backOff delays the next by-id read after a failure.
func (s *schedule) backOff(now time.Time, min, max time.Duration) {
	s.failures++
	s.retryAt = now.Add(backoff(s.failures, min, max))
}

// succeeded resets the backoff.
func (s *schedule) succeeded() {
	s.failures = 0
	s.retryAt = time.Time{}
}

// retryFeed asks for the change feed to be read again at at.
func (s *schedule) retryFeed(at time.Time, why cause) {
	s.feedRetry, s.feedRetryWhy = at, why
}
