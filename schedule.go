package jobwatch

import "time"

// schedule decides which ids the next status read covers and when it runs.
// It is plain data guarded by Watcher.mu; the scheduler goroutine acts on it.
type schedule struct {
	feed       cause               // non-zero: the next read starts with the change feed
	dropCursor bool                // the next read abandons the feed's cursor (unless it reads the feed)
	all        cause               // non-zero: the next read covers every pending id
	ids        map[JobID]struct{}  // otherwise: just these
	idsCause   cause               // why ids are marked (the strongest cause)
	dueAt      time.Time           // when the next read should run; zero: none requested
	lastRead   time.Time           // when the latest read started
	retryAt    time.Time           // not before this, after a failed read
	failures   int                 // consecutive failed reads
	pollAt     time.Time           // next safety-net poll
	refresh    time.Duration       // poll period
	unseen     map[JobID]time.Time // read but not found yet: id -> grace deadline
	graceAt    time.Time           // earliest deadline in unseen; zero: none
}

// readPlan is one status read: the change feed (when feed is set), then
// ids by id; all says ids are every pending id.
type readPlan struct {
	feed       cause
	dropCursor bool
	all        bool
	ids        []JobID
	why        cause
}

func newSchedule(now time.Time, refresh time.Duration) schedule {
	return schedule{
		ids:     make(map[JobID]struct{}),
		unseen:  make(map[JobID]time.Time),
		refresh: refresh,
		pollAt:  now.Add(jitter(refresh, 0.1)),
	}
}

// markID asks for id to be in the next read.
func (s *schedule) markID(id JobID, why cause) {
	s.ids[id] = struct{}{}
	s.idsCause = max(s.idsCause, why)
}

// markAll asks for every pending id to be in the next read.
func (s *schedule) markAll(why cause) { s.all = max(s.all, why) }

// markFeed asks for the change feed to be read next.
func (s *schedule) markFeed(why cause) { s.feed = max(s.feed, why) }

// request asks for a read within debounce of the first request not yet
// served, so a burst of requests makes one read. An urgent request (loss to
// repair) reads at once, unless a read started less than debounce ago: then
// at the end of that window, so a flood of urgent requests still costs at
// most one read per window.
func (s *schedule) request(now time.Time, debounce time.Duration, urgent bool) {
	at := now.Add(debounce)
	if urgent {
		at = s.lastRead.Add(debounce)
		if at.Before(now) {
			at = now
		}
	}
	if s.dueAt.IsZero() || at.Before(s.dueAt) {
		s.dueAt = at
	}
}

// forget drops every trace of an id nobody waits for any more.
func (s *schedule) forget(id JobID) {
	delete(s.ids, id)
	delete(s.unseen, id)
}

// reset replaces the per-id maps once nothing is pending (see
// Watcher.forget); marks for all pending jobs and the feed stay.
func (s *schedule) reset() {
	s.ids = make(map[JobID]struct{})
	s.unseen = make(map[JobID]time.Time)
	s.graceAt = time.Time{}
}

// next is when the scheduler must wake up next.
func (s *schedule) next() time.Time {
	t := s.pollAt
	if !s.graceAt.IsZero() && s.graceAt.Before(t) {
		t = s.graceAt
	}
	if !s.dueAt.IsZero() {
		due := s.dueAt
		if s.retryAt.After(due) {
			due = s.retryAt
		}
		if due.Before(t) {
			t = due
		}
	}
	return t
}

// tick turns a due poll or grace deadline into a read request.
func (s *schedule) tick(now time.Time) {
	if !s.pollAt.After(now) {
		s.markAll(causePoll)
		s.request(now, 0, true)
		s.pollAt = now.Add(jitter(s.refresh, 0.1))
	}
	if s.graceAt.IsZero() || s.graceAt.After(now) {
		return
	}
	s.graceAt = time.Time{}
	for id, deadline := range s.unseen {
		if deadline.After(now) {
			s.noteUnseen(id, deadline)
			continue
		}
		delete(s.unseen, id)
		s.markID(id, causeWait)
		s.request(now, 0, true)
	}
}

// noteUnseen remembers that id was not found and must be re-read at its
// grace deadline.
func (s *schedule) noteUnseen(id JobID, deadline time.Time) {
	s.unseen[id] = deadline
	if s.graceAt.IsZero() || deadline.Before(s.graceAt) {
		s.graceAt = deadline
	}
}

// take returns the read that is due now, if any, and clears the marks it
// covers. Only ids still in pending are read.
func (s *schedule) take(now time.Time, pending map[JobID]*entry) (readPlan, bool) {
	if s.dueAt.IsZero() || s.dueAt.After(now) || s.retryAt.After(now) {
		return readPlan{}, false
	}
	s.dueAt = time.Time{}
	plan := readPlan{feed: s.feed, dropCursor: s.dropCursor && s.feed == causeNone}
	s.dropCursor = false
	if s.all != causeNone {
		plan.why, plan.all = s.all, true
		plan.ids = make([]JobID, 0, len(pending))
		for id := range pending {
			plan.ids = append(plan.ids, id)
		}
	} else {
		plan.why = s.idsCause
		for id := range s.ids {
			if pending[id] != nil {
				plan.ids = append(plan.ids, id)
			}
		}
	}
	s.feed, s.all, s.idsCause = causeNone, causeNone, causeNone
	clear(s.ids)
	if len(pending) == 0 || (len(plan.ids) == 0 && plan.feed == causeNone) {
		return plan, false
	}
	s.lastRead = now
	return plan, true
}

// failed puts back the part of plan that was not read, and backs off.
func (s *schedule) failed(now time.Time, plan readPlan, unread []JobID, min, max time.Duration) {
	if plan.feed != causeNone {
		s.markFeed(plan.feed)
	}
	for _, id := range unread {
		s.markID(id, plan.why)
	}
	s.failures++
	s.retryAt = now.Add(backoff(s.failures, min, max))
	s.request(now, 0, true)
}

// succeeded resets the backoff.
func (s *schedule) succeeded() {
	s.failures = 0
	s.retryAt = time.Time{}
}
