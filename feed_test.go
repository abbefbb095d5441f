package jobwatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// waitMany starts one Wait per id and returns when all have returned.
func waitMany(t *testing.T, w *jobwatch.Watcher, ids []jobwatch.JobID) (wait func()) {
	t.Helper()
	ctx := bounded(t, 20*time.Second)
	base := w.Stats().Waiters
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = w.Wait(ctx, id) }()
	}
	eventually(t, "all waiting", func() bool { return w.Stats().Waiters == base+len(ids) })
	return wg.Wait
}

// With a change feed, a notification costs a read of what changed, not of
// every pending job; without one, every pending job is re-read.
func TestChangeFeedReadsOnlyWhatChanged(t *testing.T) {
	for _, useFeed := range []bool{true, false} {
		t.Run(map[bool]string{true: "feed", false: "no feed"}[useFeed], func(t *testing.T) {
			b := newFake(t)
			w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0),
				jobwatch.WithChangeFeed(useFeed))
			ids := mustEnqueue(t, b, 1000)
			listening(t, w)
			done := waitMany(t, w, ids)
			eventually(t, "initial reads", func() bool { return w.Stats().IDsRead >= 1000 })
			// The first notification starts the feed, which costs one read of
			// every pending job; measure the ones after it.
			warm := w.Stats()
			mustEnqueue(t, b, 1)
			eventually(t, "warm-up read", func() bool {
				s := w.Stats()
				if useFeed {
					return s.IDsRead >= warm.IDsRead+1000 // the feed started: one full read
				}
				return s.Reads.Notification > warm.Reads.Notification && s.IDsRead >= warm.IDsRead+1000
			})
			before := w.Stats()
			mustApply(t, b, succeed, ids[5])
			eventually(t, "one resolved", func() bool { return w.Stats().Pending == 999 })
			after := w.Stats()
			idsRead := after.IDsRead - before.IDsRead
			if useFeed && (idsRead != 0 || after.ChangesRead-before.ChangesRead > 2 || after.Resolved.Notification != 1) {
				t.Errorf("feed: read %d ids and %d changes for one job: %+v", idsRead, after.ChangesRead-before.ChangesRead, after)
			}
			if !useFeed && idsRead < 999 {
				t.Errorf("no feed: read %d ids, want every pending one", idsRead)
			}
			mustApply(t, b, succeed, append(append([]jobwatch.JobID{}, ids[:5]...), ids[6:]...)...)
			done()
		})
	}
}

// A failing change feed backs off and recovers, like a failing status read.
func TestChangeFeedFailureRecovers(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0),
		jobwatch.WithBackoff(5*time.Millisecond, 10*time.Millisecond), jobwatch.WithFeedThreshold(0))
	ids := mustEnqueue(t, b, 2)
	listening(t, w)
	done := waitMany(t, w, ids)
	eventually(t, "initial read", func() bool { return b.Counters().IDsRead >= 2 })
	b.FailReads(3, nil)
	mustApply(t, b, succeed, ids...)
	done()
	if s := w.Stats(); s.ReadErrors != 3 || s.Resolved.Notification != 2 {
		t.Errorf("stats = %+v, want 3 failures then both resolved by the feed", s)
	}
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

// A Partial change set makes the watcher read every pending job as well.
func TestPartialChangeSetReadsEverything(t *testing.T) {
	b := newFake(t)
	d := &partialFeed{Backend: b, partial: 1}
	w := newWatcher(t, d, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0),
		jobwatch.WithFeedThreshold(0))
	ids := mustEnqueue(t, b, 10)
	listening(t, w)
	done := waitMany(t, w, ids)
	eventually(t, "initial read", func() bool { return w.Stats().IDsRead >= 10 })
	before := w.Stats().IDsRead
	mustApply(t, b, []statemachine.Event{statemachine.Claim}, ids[0])
	eventually(t, "full read after a partial feed", func() bool { return w.Stats().IDsRead-before >= 10 })
	mustApply(t, b, []statemachine.Event{statemachine.Complete}, ids[0])
	mustApply(t, b, succeed, ids[1:]...)
	done()
}

// Below the feed threshold a notification reads the few pending jobs by id
// (cheaper, and the lowest latency); above it, the feed.
func TestFeedThreshold(t *testing.T) {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0), jobwatch.WithFeedThreshold(3))
	ids := mustEnqueue(t, b, 10)
	listening(t, w)
	few := waitMany(t, w, ids[:3])
	eventually(t, "initial reads", func() bool { return b.Counters().IDsRead >= 3 })
	before := b.Counters()
	mustApply(t, b, succeed, ids[0])
	eventually(t, "resolved", func() bool { return w.Stats().Pending == 2 })
	if c := b.Counters(); c.FeedReads != before.FeedReads {
		t.Errorf("3 pending (threshold 3): %d feed reads, want by id", c.FeedReads-before.FeedReads)
	}
	many := waitMany(t, w, ids[3:])
	eventually(t, "initial reads", func() bool { return b.Counters().IDsRead >= before.IDsRead+7 })
	before = b.Counters()
	mustApply(t, b, succeed, ids[3])
	eventually(t, "resolved", func() bool { return w.Stats().Pending == 8 })
	if c := b.Counters(); c.FeedReads == before.FeedReads {
		t.Error("9 pending (threshold 3): no feed read")
	}
	mustApply(t, b, succeed, ids[1], ids[2])
	mustApply(t, b, succeed, ids[4:]...)
	few()
	many()
}
