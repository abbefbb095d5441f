package reliability_test

// Many concurrent waits, random cancellations, and Close in the middle:
// 100,000 waits on the fake backend, 10,000 on each database backend.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

// stressHeapSlack is how much more live heap the test tolerates once every
// wait has returned than before the Watcher was created.
const stressHeapSlack = 10 << 20

// stressPlan shapes the waits: single Waits, WaitAlls and WaitEaches of
// the given sizes, each on its own ids and in a goroutine with its own
// ctx. Multi-job waits let 100,000 waits run under the race detector,
// which allows at most 8,128 live goroutines: Stats.Waiters counts each id
// of a WaitAll or WaitEach as one wait.
type stressPlan struct {
	singles          int
	alls, allSize    int
	eaches, eachSize int
}

func (p stressPlan) total() int { return p.singles + p.alls*p.allSize + p.eaches*p.eachSize }

// stressLoadTarget is what the load runs against.
type stressLoadTarget struct {
	name     string
	driver   jobwatch.Driver
	ids      []jobwatch.JobID // queued jobs, plan.total() of them
	complete func(ctx context.Context, ids []jobwatch.JobID) error
	batch    int // ids per complete call
	truth    func(ids []jobwatch.JobID) map[jobwatch.JobID]statemachine.State
}

const (
	stressSingle = iota
	stressAll
	stressEach
)

// stressGroup is one waiting goroutine and what its wait returned.
type stressGroup struct {
	kind      int
	ids       []jobwatch.JobID
	ctx       context.Context
	cancel    context.CancelFunc
	cancelled atomic.Bool

	state  statemachine.State   // Wait
	states []statemachine.State // WaitAll
	each   []jobwatch.Status    // WaitEach, the settled ones
	err    error
}

func stressHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// runStressLoad registers plan.total() waits, checks they are all pending
// at once, then concurrently cancels a random 30% of the groups and
// completes a random 30% of the jobs, and closes the Watcher half way
// through the completions. Every wait must return (a correct result, its
// ctx's error only if it was cancelled, or ErrClosed), the Watcher must
// forget every wait, and the heap must come back within stressHeapSlack.
func runStressLoad(t *testing.T, tg stressLoadTarget, plan stressPlan) {
	t.Helper()
	total := plan.total()
	if len(tg.ids) != total {
		t.Fatalf("%s: %d jobs for %d waits", tg.name, len(tg.ids), total)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 6))
	t.Logf("%s: seed %d", tg.name, seed)

	var groups []*stressGroup
	next := 0
	take := func(kind, n, size int) {
		for range n {
			ctx, cancel := context.WithCancel(context.Background())
			groups = append(groups, &stressGroup{kind: kind, ids: tg.ids[next : next+size], ctx: ctx, cancel: cancel})
			next += size
		}
	}
	take(stressSingle, plan.singles, 1)
	take(stressAll, plan.alls, plan.allSize)
	take(stressEach, plan.eaches, plan.eachSize)
	t.Cleanup(func() {
		for _, g := range groups {
			g.cancel()
		}
	})
	rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	toCancel := groups[:len(groups)*3/10]
	toComplete := append([]jobwatch.JobID(nil), tg.ids...)
	rng.Shuffle(len(toComplete), func(i, j int) { toComplete[i], toComplete[j] = toComplete[j], toComplete[i] })
	toComplete = toComplete[:total*3/10]
	var batches [][]jobwatch.JobID
	for start := 0; start < len(toComplete); start += tg.batch {
		batches = append(batches, toComplete[start:min(start+tg.batch, len(toComplete))])
	}

	heapBefore := stressHeap()
	w, err := jobwatch.New(tg.driver, jobwatch.WithDebounce(10*time.Millisecond),
		jobwatch.WithRefreshInterval(time.Minute), jobwatch.WithNotFoundGrace(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var waiting sync.WaitGroup
	for _, g := range groups {
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			switch g.kind {
			case stressSingle:
				g.state, g.err = w.Wait(g.ctx, g.ids[0])
			case stressAll:
				g.states, g.err = w.WaitAll(g.ctx, g.ids)
			case stressEach:
				for st, err := range w.WaitEach(g.ctx, g.ids) {
					if err != nil {
						g.err = err
						continue
					}
					g.each = append(g.each, st)
				}
			}
		}()
	}
	allReturned := make(chan struct{})
	go func() { waiting.Wait(); close(allReturned) }()

	stressUntil(t, 60*time.Second, fmt.Sprintf("%s: %d waits registered", tg.name, total), func() bool {
		return w.Stats().Waiters == total
	})
	if st := w.Stats(); st.Pending != total {
		t.Fatalf("%s: %d waits but %d pending jobs, want %d", tg.name, st.Waiters, st.Pending, total)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapLoaded := ms.HeapAlloc
	t.Logf("%s: %d waits (%d goroutines) pending after %v; live heap %.1f MB before, %.1f MB with them (%.0f B per wait, goroutine stacks not included)",
		tg.name, total, len(groups), time.Since(began).Round(time.Millisecond),
		float64(heapBefore)/(1<<20), float64(heapLoaded)/(1<<20), float64(int64(heapLoaded)-int64(heapBefore))/float64(total))

	// Cancel and complete at random, concurrently; Close half way through
	// the completions.
	ctx := pgtest.Context(t)
	half := make(chan struct{})
	var chaos sync.WaitGroup
	var completeErr error
	chaos.Add(2)
	go func() {
		defer chaos.Done()
		for _, g := range toCancel {
			g.cancelled.Store(true)
			g.cancel()
		}
	}()
	go func() {
		defer chaos.Done()
		defer func() {
			select {
			case <-half:
			default:
				close(half)
			}
		}()
		for i, b := range batches {
			if i == len(batches)/2 {
				close(half)
			}
			if err := tg.complete(ctx, b); err != nil && completeErr == nil {
				completeErr = err
			}
		}
	}()
	stressRecv(t, half, 60*time.Second, tg.name+": half the completions")
	atClose := w.Stats()
	closeStart := time.Now()
	closeErr := w.Close()
	closeTook := time.Since(closeStart)
	timer := time.NewTimer(30 * time.Second)
	select {
	case <-allReturned:
		timer.Stop()
	case <-timer.C:
		stuck := 0
		for _, g := range groups {
			if g.ctx.Err() == nil {
				stuck++
			}
		}
		t.Fatalf("%s: waits still blocked 30s after Close (up to %d groups)", tg.name, stuck)
	}
	returnedAfter := time.Since(closeStart)
	chaos.Wait()
	if completeErr != nil {
		t.Fatalf("%s: completing jobs: %v", tg.name, completeErr)
	}
	if closeErr != nil {
		t.Errorf("%s: Close: %v", tg.name, closeErr)
	}
	t.Logf("%s: Close with %d waits on %d jobs pending took %v; every wait had returned %v after Close began",
		tg.name, atClose.Waiters, atClose.Pending, closeTook.Round(time.Microsecond), returnedAfter.Round(time.Microsecond))
	if atClose.Waiters < total/10 {
		t.Errorf("%s: only %d of %d waits pending at Close: Close did not happen in the middle", tg.name, atClose.Waiters, total)
	}

	// Every result is right.
	truth := tg.truth(tg.ids)
	completed := make(map[jobwatch.JobID]bool, len(toComplete))
	for _, id := range toComplete {
		completed[id] = true
	}
	settledRight := func(id jobwatch.JobID, st statemachine.State) bool {
		return st == statemachine.Successful && truth[id] == statemachine.Successful && completed[id]
	}
	var nResolved, nCancelled, nClosed, bad int
	fail := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(tg.name+": "+format, args...)
		}
	}
	for _, g := range groups {
		switch {
		case g.err == nil:
		case errors.Is(g.err, context.Canceled):
			nCancelled++
			if !g.cancelled.Load() {
				fail("a wait on %v returned %v but its ctx was never cancelled", g.ids, g.err)
			}
		case errors.Is(g.err, jobwatch.ErrClosed):
			nClosed++
		default:
			fail("a wait on %v returned %v; want a result, context.Canceled or ErrClosed", g.ids, g.err)
		}
		switch g.kind {
		case stressSingle:
			if g.err == nil {
				nResolved++
				if !settledRight(g.ids[0], g.state) {
					fail("Wait(%d) = %v, but the job is %v (completed by the test: %v)", g.ids[0], g.state, truth[g.ids[0]], completed[g.ids[0]])
				}
			}
		case stressAll:
			if len(g.states) != len(g.ids) {
				fail("WaitAll of %d ids returned %d states (err %v)", len(g.ids), len(g.states), g.err)
				continue
			}
			for i, st := range g.states {
				if (st != statemachine.None || g.err == nil) && !settledRight(g.ids[i], st) {
					fail("WaitAll says job %d is %v (err %v), but it is %v", g.ids[i], st, g.err, truth[g.ids[i]])
				}
			}
			if g.err == nil {
				nResolved++
			}
		case stressEach:
			seen := map[jobwatch.JobID]bool{}
			for _, st := range g.each {
				if seen[st.ID] || !settledRight(st.ID, st.State) {
					fail("WaitEach yielded %v (twice: %v), but the job is %v", st, seen[st.ID], truth[st.ID])
				}
				seen[st.ID] = true
			}
			if g.err == nil {
				nResolved++
				if len(seen) != len(g.ids) {
					fail("WaitEach ended without error after %d of %d jobs", len(seen), len(g.ids))
				}
			}
		}
	}
	t.Logf("%s: %d groups settled completely, %d returned their ctx's error, %d ErrClosed", tg.name, nResolved, nCancelled, nClosed)
	if nClosed == 0 {
		t.Errorf("%s: no wait returned ErrClosed", tg.name)
	}
	if nCancelled == 0 {
		t.Errorf("%s: no wait returned its ctx's error", tg.name)
	}

	// The Watcher forgot every wait, and the memory is back.
	if st := w.Stats(); st.Pending != 0 || st.Waiters != 0 {
		t.Errorf("%s: after every wait returned, Stats has %d pending jobs and %d waiters; want 0", tg.name, st.Pending, st.Waiters)
	}
	heapAfter := stressHeap()
	runtime.KeepAlive(w) // the closed Watcher is still referenced: its entries must be gone, not just unreachable
	t.Logf("%s: live heap %.1f MB before the Watcher, %.1f MB after every wait returned (limit +%d MB)",
		tg.name, float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), stressHeapSlack>>20)
	if heapAfter > heapBefore+stressHeapSlack {
		t.Errorf("%s: live heap grew from %.1f MB to %.1f MB, more than %d MB", tg.name,
			float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), stressHeapSlack>>20)
	}
	w = nil
	heapDropped := stressHeap()
	t.Logf("%s: live heap %.1f MB once the closed Watcher is dropped too (%.1f MB was held by it: map capacity from the peak)",
		tg.name, float64(heapDropped)/(1<<20), (float64(heapAfter)-float64(heapDropped))/(1<<20))
}

// TestLoadWaitsFake: 100,000 concurrent waits on the fake backend (1,000
// Waits, 1,000 WaitAlls of 50 jobs, 1,000 WaitEaches of 49), random
// cancellations and completions, Close in the middle.
func TestLoadWaitsFake(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	plan := stressPlan{singles: 1000, alls: 1000, allSize: 50, eaches: 1000, eachSize: 49}
	fb := fake.New()
	ids, err := fb.EnqueueN(context.Background(), plan.total())
	if err != nil {
		t.Fatal(err)
	}
	runStressLoad(t, stressLoadTarget{
		name:   "fake",
		driver: fb,
		ids:    ids,
		batch:  1000,
		complete: func(ctx context.Context, ids []jobwatch.JobID) error {
			if err := fb.Apply(ctx, statemachine.Claim, ids...); err != nil {
				return err
			}
			return fb.Apply(ctx, statemachine.Complete, ids...)
		},
		truth: func(ids []jobwatch.JobID) map[jobwatch.JobID]statemachine.State {
			out := make(map[jobwatch.JobID]statemachine.State, len(ids))
			for _, id := range ids {
				if st, ok := fb.State(id); ok {
					out[id] = st
				}
			}
			return out
		},
	}, plan)
	_ = fb.Close()
	goleak.VerifyNone(t, leaks)
}

// TestLoadWaitsDB: 10,000 concurrent waits on each database backend (200
// Waits, 200 WaitAlls of 25 jobs, 200 WaitEaches of 24), random
// cancellations and completions through the real write path, Close in the
// middle.
func TestLoadWaitsDB(t *testing.T) {
	plan := stressPlan{singles: 200, alls: 200, allSize: 25, eaches: 200, eachSize: 24}
	for _, kind := range stressKinds {
		t.Run(kind, func(t *testing.T) {
			leaks := goleak.IgnoreCurrent()
			e := newStressEnv(t, kind, stressEnvOpts{maxConns: 6})
			ids := e.enqueue(plan.total(), "load")
			runStressLoad(t, stressLoadTarget{
				name:   kind,
				driver: e.b,
				ids:    ids,
				batch:  250,
				complete: func(ctx context.Context, ids []jobwatch.JobID) error {
					if err := e.b.Apply(ctx, statemachine.Claim, ids...); err != nil {
						return err
					}
					return e.b.Apply(ctx, statemachine.Complete, ids...)
				},
				truth: e.truth,
			}, plan)
			e.closeAll()
			goleak.VerifyNone(t, leaks)
		})
	}
}
