package jobwatch_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Start-up: a new batch of waits costs one read of each id (the cursor is
// started just before it) and then only the feed.
func TestStartupReadsEachPendingJobOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly))
		ids := mustEnqueue(t, b, 1000)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Second)
		if s := w.Stats(); s.IDsRead != 1000 || s.FeedReads != 1 || s.FullReads != 1 {
			t.Fatalf("start-up: %d ids read, %d feed reads, %d full reads; want 1000, 1, 1", s.IDsRead, s.FeedReads, s.FullReads)
		}
		for _, id := range ids[:10] {
			mustApply(t, b, succeed, id)
			advance(time.Second)
		}
		if s := w.Stats(); s.IDsRead != 1000 || s.Resolved.Notification != 10 {
			t.Errorf("after 10 completions: %d ids read (want still 1000), %d resolved by notification", s.IDsRead, s.Resolved.Notification)
		}
		mustApply(t, b, succeed, ids[10:]...)
		wait()
	})
}

// With a change feed, a notification costs a read of what changed, not of
// every pending job; without one (PgQueuer's method), every pending job is
// re-read.
func TestChangeFeedReadsOnlyWhatChanged(t *testing.T) {
	for _, useFeed := range []bool{true, false} {
		t.Run(map[bool]string{true: "feed", false: "no feed"}[useFeed], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newFake(t)
				w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(0),
					jobwatch.WithChangeFeed(useFeed))
				ids := mustEnqueue(t, b, 1000)
				listening(t, w)
				wait := goWaitMany(w, context.Background(), ids)
				quiet()
				before := w.Stats()
				mustApply(t, b, hold, ids[5]) // announced, not final
				quiet()
				mustApply(t, b, remove, ids[5])
				quiet()
				after := w.Stats()
				idsRead := after.IDsRead - before.IDsRead
				if useFeed && (idsRead != 0 || after.ChangesRead-before.ChangesRead != 2 || after.Resolved.Notification != 1) {
					t.Errorf("feed: read %d ids and %d changes for one job's two commits", idsRead, after.ChangesRead-before.ChangesRead)
				}
				if !useFeed && idsRead != 2000 {
					t.Errorf("no feed: read %d ids for two commits, want every pending one each time", idsRead)
				}
				mustApply(t, b, succeed, append(append([]jobwatch.JobID{}, ids[:5]...), ids[6:]...)...)
				wait()
			})
		})
	}
}

// The poll reads the feed while it vouches; every pending job is re-read
// only at the full-read interval, in chunks of the batch size.
func TestPollReadsFeedAndFullReadIsChunked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Second), jobwatch.WithFullReadInterval(time.Minute),
			jobwatch.WithBatchSize(300))
		ids := mustEnqueue(t, b, 1000)
		listening(t, w)
		ctx, cancel := context.WithCancel(context.Background())
		wait := goWaitMany(w, ctx, ids)
		advance(time.Second / 2)
		start := w.Stats()
		advance(50 * time.Second) // polls, no full read (the first comes at 54-66 s)
		polls := w.Stats()
		if polls.IDsRead != start.IDsRead || polls.Reads.Poll < 40 || polls.FeedReads-start.FeedReads < 40 {
			t.Errorf("50 s of polls: %d ids read, %d poll reads, %d feed reads; want the feed only",
				polls.IDsRead-start.IDsRead, polls.Reads.Poll-start.Reads.Poll, polls.FeedReads-start.FeedReads)
		}
		advance(20 * time.Second)
		full := w.Stats()
		if full.FullReads-polls.FullReads != 1 || full.IDsRead-polls.IDsRead != 1000 {
			t.Errorf("at the full-read interval: %d full reads, %d ids; want 1 of 1000",
				full.FullReads-polls.FullReads, full.IDsRead-polls.IDsRead)
		}
		if c := b.Counters().Reads; c == 0 {
			t.Fatal("no reads")
		}
		cancel()
		wait()
	})
}

// recorder is a fake whose reads are logged in the order they run.
type recorder struct {
	*fake.Backend
	mu  sync.Mutex
	log []string
}

func (r *recorder) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	r.note("ids")
	return r.Backend.FetchStatuses(ctx, ids)
}

func (r *recorder) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	r.note("feed")
	return r.Backend.Changes(ctx, c)
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// A notification that arrives during a full read is read before the next
// chunk: it never waits behind the whole full read.
func TestNotificationIsReadBetweenChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &recorder{Backend: b}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(hourly), jobwatch.WithFullReadInterval(time.Minute),
			jobwatch.WithBatchSize(100), jobwatch.WithDebounce(0))
		ids := mustEnqueue(t, b, 1000)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Second)
		release := b.BlockReads()
		d.take()
		advance(time.Minute + 6*time.Second) // the full read starts; its first chunk blocks
		mustApply(t, b, succeed, ids[0])     // one notification (from one commit)... and a second
		quiet()
		release()
		quiet()
		got := d.take()
		// chunk, then the two notifications' feed read(s), then the other chunks.
		if len(got) < 3 || got[0] != "ids" || got[1] != "feed" {
			t.Fatalf("reads in order: %v, want the first chunk, then the feed before the other chunks", got)
		}
		if n := strings.Count(strings.Join(got, " "), "ids"); n != 10 {
			t.Errorf("%d chunks, want 10 of 100", n)
		}
		mustApply(t, b, succeed, ids[1:]...)
		wait()
	})
}

// failingFeed is a fake whose change feed fails while fail is set; reads
// by id work.
type failingFeed struct {
	*fake.Backend
	mu    sync.Mutex
	fail  bool
	tries int
}

func (f *failingFeed) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	f.mu.Lock()
	fail := f.fail
	f.tries++
	f.mu.Unlock()
	if fail {
		return jobwatch.ChangeSet{}, errors.New("feed: a row it cannot parse")
	}
	return f.Backend.Changes(ctx, c)
}

func (f *failingFeed) set(fail bool) (tries int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
	return f.tries
}

// Invariant 8: while the feed fails, waits are served by id, with the poll
// and not-found checks, and the feed is retried with backoff.
func TestFailingFeedNeverBlocksTheCorePath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &failingFeed{Backend: b, fail: true}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(time.Second), jobwatch.WithFeedThreshold(0),
			jobwatch.WithBackoff(time.Second, 8*time.Second), jobwatch.WithNotFoundGrace(10*time.Second))
		ids := mustEnqueue(t, b, 3)
		listening(t, w)
		mustApply(t, b, succeed, ids[0])
		finished := goWait(w, context.Background(), ids[0])
		notified := goWait(w, context.Background(), ids[1])
		silent := goWait(w, context.Background(), ids[2])
		unknown := goWait(w, context.Background(), 999)
		advance(time.Second)
		if r, ok := returned(finished); !ok || r.state != statemachine.Successful {
			t.Errorf("a finished job's wait: %v %v, want served by id", r, ok)
		}
		mustApply(t, b, succeed, ids[1])
		advance(100 * time.Millisecond) // the debounce
		if r, ok := returned(notified); !ok || r.state != statemachine.Successful {
			t.Errorf("a notified completion: %v %v, want served by a read of every pending job", r, ok)
		}
		b.DropNotifications(2)
		mustApply(t, b, succeed, ids[2])
		quiet()
		if _, ok := returned(silent); ok {
			t.Fatal("resolved without a notification or a poll")
		}
		advance(time.Second * 11 / 10)
		if r, ok := returned(silent); !ok || r.state != statemachine.Successful {
			t.Errorf("a lost notification: %v %v, want served by the poll", r, ok)
		}
		advance(10 * time.Second)
		if r, ok := returned(unknown); !ok || !errors.Is(r.err, jobwatch.ErrNotFound) {
			t.Errorf("an unknown job: %v %v, want not found at the grace", r, ok)
		}
		// Backoff: 1, 2, 4, 8, 8 s (±20%) over about 23 s; retried, not in a loop.
		tries := d.set(false)
		if tries < 3 || tries > 8 {
			t.Errorf("the feed was tried %d times in ~23 s, want backoff", tries)
		}
		s := w.Stats()
		if s.FeedReadErrors == 0 || s.Reads.Total() == 0 {
			t.Errorf("stats = %+v", s)
		}
		advance(10 * time.Second)
		if !w.Stats().ChangeFeed || w.Stats().FeedReadErrors != s.FeedReadErrors {
			t.Error("the feed did not recover")
		}
	})
}

// skippingFeed reports rows it skipped.
type skippingFeed struct{ *fake.Backend }

func (s skippingFeed) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	cs, err := s.Backend.Changes(ctx, c)
	if c != nil {
		cs.Skipped = 2
	}
	return cs, err
}

func TestSkippedChangesAreCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, skippingFeed{b}, jobwatch.WithFeedThreshold(0), jobwatch.WithRefreshInterval(hourly))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		got := goWait(w, context.Background(), ids[0])
		advance(time.Second)
		mustApply(t, b, hold, ids[0]) // announced, not final
		advance(time.Second)
		mustApply(t, b, remove, ids[0])
		advance(time.Second)
		if r, ok := returned(got); !ok || r.state != statemachine.Deleted {
			t.Fatalf("Wait = %v %v", r, ok)
		}
		if s := w.Stats(); s.SkippedChanges != 4 {
			t.Errorf("SkippedChanges = %d, want 4", s.SkippedChanges)
		}
	})
}

// partialFeed says, once, that its feed cannot vouch for the past.
type partialFeed struct {
	*fake.Backend
	mu      sync.Mutex
	partial int
}

func (p *partialFeed) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	cs, err := p.Backend.Changes(ctx, c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil && p.partial > 0 {
		p.partial--
		cs.Partial = true
	}
	return cs, err
}

// A Partial change set makes the watcher read every pending job once.
func TestPartialChangeSetReadsEverythingOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &partialFeed{Backend: b, partial: 1}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(hourly), jobwatch.WithFeedThreshold(0))
		ids := mustEnqueue(t, b, 10)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Second)
		before := w.Stats()
		mustApply(t, b, hold, ids[0]) // announced, not final
		advance(time.Second)
		mustApply(t, b, hold, ids[1])
		advance(time.Second)
		if s := w.Stats(); s.IDsRead-before.IDsRead != 10 || s.FullReads-before.FullReads != 1 {
			t.Errorf("after a Partial and a normal change set: %d ids, %d full reads; want one full read of 10",
				s.IDsRead-before.IDsRead, s.FullReads-before.FullReads)
		}
		mustApply(t, b, remove, ids[0], ids[1])
		mustApply(t, b, succeed, ids[2:]...)
		wait()
	})
}

// lossyFeed drops one job's changes: a broken feed.
type lossyFeed struct {
	*fake.Backend
	lose jobwatch.JobID
}

func (l lossyFeed) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	cs, err := l.Backend.Changes(ctx, c)
	kept := cs.Statuses[:0:0]
	for _, st := range cs.Statuses {
		if st.ID != l.lose {
			kept = append(kept, st)
		}
	}
	cs.Statuses = kept
	return cs, err
}

// A job the full read settles while the feed vouched, and that the feed
// never reported, is a missed change: counted and logged.
func TestMissedChangeIsCountedAndLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		ids := mustEnqueue(t, b, 20)
		var logs syncBuffer
		w, err := jobwatch.New(lossyFeed{b, ids[3]}, jobwatch.WithRefreshInterval(time.Second), jobwatch.WithFeedThreshold(0),
			jobwatch.WithFullReadInterval(time.Minute), jobwatch.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Second)
		mustApply(t, b, succeed, ids...)
		advance(30 * time.Second)
		if s := w.Stats(); s.Pending != 1 || s.MissedChanges != 0 {
			t.Fatalf("before the full read: %d pending, %d missed; want job %d left, none counted yet", s.Pending, s.MissedChanges, ids[3])
		}
		advance(40 * time.Second)
		wait()
		if s := w.Stats(); s.MissedChanges != 1 {
			t.Errorf("MissedChanges = %d, want 1", s.MissedChanges)
		}
		if !strings.Contains(logs.String(), "missed") {
			t.Errorf("no warning logged:\n%s", logs.String())
		}
	})
}

// A change committed just before a full read's chunk, whose notification
// has not been read yet, is no miss: the next feed read names it.
func TestRaceWithFullReadIsNoMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithFullReadInterval(time.Minute),
			jobwatch.WithDebounce(time.Minute)) // the notification's read waits a minute
		ids := mustEnqueue(t, b, 20)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Minute)
		advance(40 * time.Second)
		mustApply(t, b, succeed, ids...) // the full read (54-66 s) comes first
		advance(2 * time.Minute)
		wait()
		if s := w.Stats(); s.Resolved.Poll == 0 {
			t.Errorf("stats = %+v, want jobs settled by the full read", s)
		}
		// newWatcher's cleanup checks that MissedChanges is 0.
	})
}

// Below the feed threshold a notification reads the few pending jobs by id
// (cheaper, and the lowest latency); above it, the feed.
func TestFeedThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithRefreshInterval(hourly), jobwatch.WithDebounce(0), jobwatch.WithFeedThreshold(3))
		ids := mustEnqueue(t, b, 10)
		listening(t, w)
		few := goWaitMany(w, context.Background(), ids[:3])
		quiet()
		before := b.Counters()
		mustApply(t, b, succeed, ids[0])
		quiet()
		if c := b.Counters(); c.FeedReads != before.FeedReads {
			t.Errorf("3 pending (threshold 3): %d feed reads, want by id", c.FeedReads-before.FeedReads)
		}
		many := goWaitMany(w, context.Background(), ids[3:])
		quiet()
		before = b.Counters()
		mustApply(t, b, succeed, ids[3])
		quiet()
		if c := b.Counters(); c.FeedReads == before.FeedReads || c.IDsRead != before.IDsRead {
			t.Errorf("9 pending (threshold 3): %d feed reads, %d ids read; want the feed only",
				c.FeedReads-before.FeedReads, c.IDsRead-before.IDsRead)
		}
		mustApply(t, b, succeed, ids[1], ids[2])
		mustApply(t, b, succeed, ids[4:]...)
		few()
		many()
	})
}

// blankPartialFeed, once armed, answers one read with a Partial change set
// that names nothing: a feed that lost its place and says so.
type blankPartialFeed struct {
	*fake.Backend
	mu    sync.Mutex
	armed bool
}

func (p *blankPartialFeed) Changes(ctx context.Context, c jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	cs, err := p.Backend.Changes(ctx, c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && c != nil && p.armed {
		p.armed = false
		cs.Statuses, cs.Partial = nil, true
	}
	return cs, err
}

// A Partial change set after a full read cannot deny what that read found:
// it disclaims completeness, so nothing counts as missed.
func TestPartialAfterFullReadIsNoMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		d := &blankPartialFeed{Backend: b}
		w := newWatcher(t, d, jobwatch.WithRefreshInterval(hourly), jobwatch.WithFullReadInterval(time.Minute),
			jobwatch.WithDebounce(time.Minute))
		ids := mustEnqueue(t, b, 20)
		listening(t, w)
		wait := goWaitMany(w, context.Background(), ids)
		advance(time.Minute)
		advance(40 * time.Second)
		d.mu.Lock()
		d.armed = true // the read that confirms the full read's findings
		d.mu.Unlock()
		b.DelayNotifications(time.Minute) // the full read comes first
		mustApply(t, b, succeed, ids...)
		advance(2 * time.Minute)
		wait()
		// newWatcher's cleanup checks that MissedChanges is 0.
	})
}
