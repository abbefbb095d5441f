package jobwatch

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pendingOf(ids ...JobID) map[JobID]*entry {
	m := make(map[JobID]*entry, len(ids))
	for _, id := range ids {
		m[id] = &entry{id: id}
	}
	return m
}

func TestScheduleRequest(t *testing.T) {
	const debounce = 50 * time.Millisecond
	tests := []struct {
		name     string
		lastRead time.Time
		dueAt    time.Time
		urgent   bool
		now      time.Time
		want     time.Time
	}{
		{"first request waits the debounce", time.Time{}, time.Time{}, false, t0, t0.Add(debounce)},
		{"a later request keeps the earlier due time", time.Time{}, t0.Add(10 * time.Millisecond), false, t0, t0.Add(10 * time.Millisecond)},
		{"urgent reads at once", t0.Add(-time.Second), time.Time{}, true, t0, t0},
		{"urgent right after a read waits for the window", t0.Add(-10 * time.Millisecond), time.Time{}, true, t0, t0.Add(40 * time.Millisecond)},
		{"urgent brings a debounced read forward", time.Time{}, t0.Add(debounce), true, t0, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSchedule(t0, time.Hour, time.Hour, debounce)
			s.lastRead, s.dueAt = tt.lastRead, tt.dueAt
			s.request(tt.now, debounce, tt.urgent)
			if !s.dueAt.Equal(tt.want) {
				t.Errorf("dueAt = %v, want %v", s.dueAt.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

func TestScheduleMarkAllDuringFullRead(t *testing.T) {
	tests := []struct {
		name      string
		running   bool
		why       cause
		wantAll   cause
		wantAgain cause
	}{
		{"none running: asked for", false, causeNotification, causeNotification, causeNone},
		{"running: another pass after it", true, causeResync, causeNone, causeResync},
		{"running: a poll is answered by it", true, causePoll, causeNone, causeNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSchedule(t0, time.Hour, time.Hour, 0)
			if tt.running {
				s.full = &fullRead{ids: []JobID{1}}
			}
			s.markAll(tt.why)
			if s.all != tt.wantAll || s.again != tt.wantAgain {
				t.Errorf("all, again = %d, %d; want %d, %d", s.all, s.again, tt.wantAll, tt.wantAgain)
			}
		})
	}
}

func TestScheduleTakeQuick(t *testing.T) {
	s := newSchedule(t0, time.Hour, time.Hour, 0)
	pending := pendingOf(1, 2)
	s.markID(1, causeWait)
	s.markID(3, causeNotification) // no longer pending
	s.markFeed(causePoll)
	if _, ok := s.takeQuick(t0, pending); ok {
		t.Fatal("took a read nobody requested")
	}
	s.request(t0, 10*time.Millisecond, false)
	if _, ok := s.takeQuick(t0, pending); ok {
		t.Fatal("took a read before its debounce")
	}
	s.retryAt = t0.Add(time.Second)
	if _, ok := s.takeQuick(t0.Add(10*time.Millisecond), pending); ok {
		t.Fatal("took a read during a backoff")
	}
	at := t0.Add(time.Second)
	plan, ok := s.takeQuick(at, pending)
	if !ok || plan.feed != causePoll || !slices.Equal(plan.ids, []JobID{1}) || plan.why != causeNotification {
		t.Fatalf("plan = %+v, %v; want the feed and id 1 (3 is gone), why the strongest mark", plan, ok)
	}
	if !s.lastRead.Equal(at) || len(s.ids) != 0 || s.feed != causeNone || !s.dueAt.IsZero() {
		t.Errorf("marks not cleared: %+v", s)
	}
}

func TestScheduleFullReadInChunks(t *testing.T) {
	const limit = time.Second
	s := newSchedule(t0, time.Hour, time.Hour, limit)
	pending := pendingOf(1, 2, 3, 4, 5)
	s.markID(2, causeWait)
	s.markAll(causeResync)
	f := s.startFull(t0, pending)
	if f == nil || len(f.ids) != 5 || f.why != causeResync || len(s.ids) != 0 {
		t.Fatalf("startFull = %+v; want all five, and the marked id folded into it", f)
	}
	s.markAll(causeNotification) // during it: another pass
	var read []JobID
	for {
		ids, got, ok := s.takeChunk(t0, 2)
		if !ok || got != f {
			t.Fatalf("takeChunk = %v, %v", ids, ok)
		}
		read = append(read, ids...)
		if s.chunkDone(f, len(ids)) {
			break
		}
	}
	slices.Sort(read)
	if !slices.Equal(read, []JobID{1, 2, 3, 4, 5}) {
		t.Errorf("read %v", read)
	}
	if s.full != nil || s.all != causeNotification {
		t.Fatalf("after the pass: full %v, all %d; want the second pass asked for", s.full, s.all)
	}
	if s.startFull(t0.Add(limit/2), pending) != nil {
		t.Error("a second full read started within the rate limit")
	}
	if s.startFull(t0.Add(limit), pending) == nil {
		t.Error("the second full read did not start after the rate limit")
	}
	s.retryAt = t0.Add(2 * limit)
	if _, _, ok := s.takeChunk(t0.Add(limit), 2); ok {
		t.Error("a chunk was read during a backoff")
	}
}

func TestScheduleStartFullWithNothingPending(t *testing.T) {
	s := newSchedule(t0, time.Hour, time.Hour, 0)
	s.markAll(causeResync)
	if f := s.startFull(t0, pendingOf()); f != nil || s.all != causeNone {
		t.Errorf("startFull with nothing pending = %+v, all %d", f, s.all)
	}
}

func TestScheduleTick(t *testing.T) {
	const refresh, fullEvery = time.Second, time.Minute
	tests := []struct {
		name     string
		at       time.Duration
		vouching bool
		wantFeed cause
		wantAll  cause
	}{
		{"nothing due", refresh / 2, true, causeNone, causeNone},
		{"poll with a vouching feed reads the feed", 2 * refresh, true, causePoll, causeNone},
		{"poll without one reads everything", 2 * refresh, false, causeNone, causePoll},
		{"full-read interval reads everything", 2 * fullEvery, true, causePoll, causePoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSchedule(t0, refresh, fullEvery, 0)
			s.tick(t0.Add(tt.at), tt.vouching)
			if s.feed != tt.wantFeed || s.all != tt.wantAll {
				t.Errorf("feed, all = %d, %d; want %d, %d", s.feed, s.all, tt.wantFeed, tt.wantAll)
			}
			if !s.pollAt.After(t0.Add(tt.at)) || !s.fullAt.After(t0.Add(tt.at)) {
				t.Error("a timer was not re-armed")
			}
		})
	}
}

func TestScheduleGrace(t *testing.T) {
	s := newSchedule(t0, time.Hour, time.Hour, 0)
	s.noteUnseen(1, t0.Add(2*time.Second))
	s.noteUnseen(2, t0.Add(time.Second))
	if !s.next().Equal(t0.Add(time.Second)) {
		t.Fatalf("next = %v, want the earliest deadline", s.next().Sub(t0))
	}
	if got := s.tick(t0.Add(time.Second), false); !slices.Equal(got, []JobID{2}) {
		t.Errorf("expired = %v, want [2]", got)
	}
	if !s.graceAt.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("graceAt = %v, want the next deadline", s.graceAt.Sub(t0))
	}
	s.forget(1)
	if got := s.tick(t0.Add(3*time.Second), false); len(got) != 0 {
		t.Errorf("expired = %v after forget", got)
	}
}

func TestScheduleNext(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *schedule)
		want  time.Time
	}{
		{"poll", func(s *schedule) {}, t0.Add(time.Second)},
		{"a quick read after its debounce", func(s *schedule) { s.dueAt = t0.Add(10 * time.Millisecond) }, t0.Add(10 * time.Millisecond)},
		{"a quick read after a backoff", func(s *schedule) {
			s.dueAt, s.retryAt = t0.Add(10*time.Millisecond), t0.Add(500*time.Millisecond)
		}, t0.Add(500 * time.Millisecond)},
		{"a running full read goes on at once", func(s *schedule) { s.full = &fullRead{ids: []JobID{1}} }, time.Time{}},
		{"an asked-for full read waits for its rate limit", func(s *schedule) {
			s.all, s.lastFull = causeResync, t0
		}, t0.Add(100 * time.Millisecond)},
		{"a failed feed's retry", func(s *schedule) { s.retryFeed(t0.Add(200*time.Millisecond), causeWait) }, t0.Add(200 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSchedule(t0, time.Second, time.Hour, 100*time.Millisecond)
			s.pollAt = t0.Add(time.Second)
			tt.setup(&s)
			if got := s.next(); !got.Equal(tt.want) {
				t.Errorf("next = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScheduleFailedQuickBacksOff(t *testing.T) {
	s := newSchedule(t0, time.Hour, time.Hour, 0)
	for i := 1; i <= 5; i++ {
		s.failedQuick(t0, []JobID{7}, causeWait, time.Second, 4*time.Second)
		if _, ok := s.ids[7]; !ok || s.failures != i {
			t.Fatalf("failure %d: ids %v, failures %d", i, s.ids, s.failures)
		}
		if d := s.retryAt.Sub(t0); d < time.Second*8/10 || d > 4*time.Second {
			t.Errorf("failure %d: backoff %s out of [0.8s, 4s]", i, d)
		}
	}
	s.succeeded()
	if s.failures != 0 || !s.retryAt.IsZero() {
		t.Errorf("after success: %+v", s)
	}
}
