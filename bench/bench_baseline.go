package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// pollStats counts what a crowd of polling waiters did.
type pollStats struct {
	clock     dbClock       // each poll query's wall time
	errors    atomic.Uint64 // failed polls (the loop keeps polling)
	firstDone atomic.Int64  // pollers that have read once
}

// pollUntilSettled is the baseline: the loop a user writes without this
// library. It reads the job's newest log row, and until the job is
// terminal sleeps the poll interval and reads again. It returns when it saw
// the job settle, or ctx's error.
func (b *bench) pollUntilSettled(ctx context.Context, id jobwatch.JobID, ps *pollStats) (time.Time, error) {
	timer := time.NewTimer(b.cfg.pollInterval)
	defer timer.Stop()
	first := true
	for {
		status, found, dt, err := b.m.pollStatus(ctx, b.pollSQL, id)
		if err != nil && ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if first {
			ps.firstDone.Add(1)
			first = false
		}
		if err != nil {
			ps.errors.Add(1)
		} else {
			ps.clock.add(dt)
			if st, perr := statemachine.ParseState(status); found && perr == nil && st.Terminal() {
				return time.Now(), nil
			}
		}
		timer.Reset(b.cfg.pollInterval)
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-timer.C:
		}
	}
}

// latencyBaseline: each sample starts a poller on a picked job, completes
// the job at a random moment of the poller's cycle, and measures until the
// poller sees it. Ten samples run at once (independent jobs; a tiny load)
// to keep the run short.
func (b *bench) latencyBaseline(ctx context.Context) (dist, error) {
	ids, err := b.prepare(ctx, b.cfg.samples)
	if err != nil {
		return dist{}, err
	}
	const lanes = 10
	lat := make([]float64, len(ids))
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(lanes, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				d, err := b.baselineSample(ctx, ids[i])
				if err != nil {
					errOnce.Do(func() { failure = err; cancel() })
					return
				}
				lat[i] = ms(d)
			}
		}()
	}
	wg.Wait()
	if failure != nil {
		return dist{}, failure
	}
	return summarize(lat), nil
}

func (b *bench) baselineSample(ctx context.Context, id jobwatch.JobID) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type seen struct {
		at  time.Time
		err error
	}
	done := make(chan seen, 1)
	var ps pollStats
	go func() {
		at, err := b.pollUntilSettled(ctx, id, &ps)
		done <- seen{at, err}
	}()
	// Complete at a random point of the poller's cycle, after its first read.
	phase := time.NewTimer(time.Duration(rand.Int64N(int64(b.cfg.pollInterval))) + time.Millisecond)
	defer phase.Stop()
	select {
	case <-phase.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := b.workers.Apply(ctx, statemachine.Complete, id); err != nil {
		return 0, err
	}
	t0 := time.Now()
	s := <-done
	if s.err != nil {
		return 0, s.err
	}
	return nonNegative(s.at.Sub(t0)), nil
}

// crowd is n pollers, one per job, polling until their job settles or the
// crowd is stopped.
type crowd struct {
	stats    pollStats
	seen     []time.Time // when each job was seen settled; zero if not
	resolved atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startCrowd starts one poller per id. Stop it with stop.
func (b *bench) startCrowd(ctx context.Context, ids []jobwatch.JobID) *crowd {
	c := &crowd{seen: make([]time.Time, len(ids))}
	ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(len(ids))
	for i, id := range ids {
		go func() {
			defer c.wg.Done()
			if at, err := b.pollUntilSettled(ctx, id, &c.stats); err == nil {
				c.seen[i] = at
				c.resolved.Add(1)
			}
		}()
	}
	return c
}

// stop ends every poller and waits for them; c.seen is then safe to read.
func (c *crowd) stop() {
	c.cancel()
	c.wg.Wait()
}
