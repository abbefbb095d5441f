package main

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// recorder notes when each wait of a run returned.
type recorder struct {
	index    map[jobwatch.JobID]int32
	at       []int64 // unix nanoseconds of the wait's return; 0 while pending
	resolved atomic.Int64
	errors   atomic.Int64
}

func newRecorder(ids []jobwatch.JobID) *recorder {
	r := &recorder{index: make(map[jobwatch.JobID]int32, len(ids)), at: make([]int64, len(ids))}
	for i, id := range ids {
		r.index[id] = int32(i)
	}
	return r
}

// record notes that the wait on id returned now. Distinct ids may be
// recorded concurrently.
func (r *recorder) record(id jobwatch.JobID, err error) {
	now := time.Now().UnixNano()
	i, ok := r.index[id]
	if !ok || r.at[i] != 0 {
		return
	}
	r.at[i] = now
	if err != nil {
		r.errors.Add(1)
	}
	r.resolved.Add(1)
}

// waiters waits on a run's jobs one way (a series).
type waiters interface {
	// started reports whether every wait has made its start-up read.
	started() bool
	// done is closed once every wait has returned.
	done() <-chan struct{}
	// stop ends the waits still pending and returns once their goroutines
	// have; it returns the watcher's Stats (nil for the polling loop).
	stop() *statsJSON
}

// startWaiters starts waiting on ids the way series s does, on db,
// noting returns in rec.
func (b *bench) startWaiters(ctx context.Context, s seriesID, db measuredDB, ids []jobwatch.JobID, rec *recorder) (waiters, error) {
	switch s {
	case seriesPolling:
		return startPolling(ctx, db, b.pollSQL, ids, rec, b.cfg.pollInterval), nil
	case seriesNoFeed:
		return startJobwatch(ctx, db, ids, rec, jobwatch.WithChangeFeed(false))
	}
	return startJobwatch(ctx, db, ids, rec)
}

// jobwatchWaiters is one Watcher, as `jobwatch wait` makes it, with one
// WaitEach over every id.
type jobwatchWaiters struct {
	w        *jobwatch.Watcher
	n        uint64
	cancel   context.CancelFunc
	finished chan struct{}
}

func startJobwatch(ctx context.Context, db measuredDB, ids []jobwatch.JobID, rec *recorder, opts ...jobwatch.Option) (*jobwatchWaiters, error) {
	w, err := jobwatch.New(db.Queue, opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	j := &jobwatchWaiters{w: w, n: uint64(len(ids)), cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(j.finished)
		for st, err := range w.WaitEach(ctx, ids) {
			if ctx.Err() != nil {
				continue // stopped: not a return of the wait's own
			}
			rec.record(st.ID, err)
		}
	}()
	return j, nil
}

// started: every id has been read once.
func (j *jobwatchWaiters) started() bool { return j.w.Stats().IDsRead >= j.n }

func (j *jobwatchWaiters) done() <-chan struct{} { return j.finished }

func (j *jobwatchWaiters) stop() *statsJSON {
	s := newStatsJSON(j.w.Stats())
	j.cancel()
	<-j.finished
	_ = j.w.Close()
	return s
}

// pollers is the polling loop: a goroutine per job reading its status,
// then sleeping the poll interval, until the job is terminal, as a user
// without jobwatch would write it.
type pollers struct {
	n         int64
	firstDone atomic.Int64
	left      atomic.Int64
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	allDone   chan struct{}
}

func startPolling(ctx context.Context, db measuredDB, query string, ids []jobwatch.JobID, rec *recorder, interval time.Duration) *pollers {
	ctx, cancel := context.WithCancel(ctx)
	p := &pollers{n: int64(len(ids)), cancel: cancel, allDone: make(chan struct{})}
	p.left.Store(int64(len(ids)))
	p.wg.Add(len(ids))
	for _, id := range ids {
		// Loops started at random points of the interval, as independent
		// callers' would be.
		go p.poll(ctx, db, query, id, rec, interval, rand.N(interval))
	}
	return p
}

func (p *pollers) poll(ctx context.Context, db measuredDB, query string, id jobwatch.JobID, rec *recorder, interval, offset time.Duration) {
	defer p.wg.Done()
	if !sleep(ctx, offset) {
		return
	}
	first := true
	for {
		status, found, err := db.pollStatus(ctx, query, id)
		if ctx.Err() != nil {
			return
		}
		if first {
			first = false
			p.firstDone.Add(1)
		}
		if err == nil && found {
			if st, perr := statemachine.ParseState(status); perr == nil && st.Terminal() {
				rec.record(id, nil)
				if p.left.Add(-1) == 0 {
					close(p.allDone)
				}
				return
			}
		}
		if !sleep(ctx, interval) {
			return
		}
	}
}

func (p *pollers) started() bool { return p.firstDone.Load() >= p.n }

func (p *pollers) done() <-chan struct{} { return p.allDone }

func (p *pollers) stop() *statsJSON {
	p.cancel()
	p.wg.Wait()
	return nil
}

// sleep waits d or until ctx is done, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// liveBytes is the live heap plus goroutine stacks, after a collection.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}
