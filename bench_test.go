package jobwatch_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// BenchmarkWaitResolve100k registers 100,000 waits on the fake backend and
// resolves them all with one batched completion. Reported per operation (one
// round of 100,000): time, allocations, and the watcher's status reads.
func BenchmarkWaitResolve100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	b.ReportAllocs()
	var reads, idsRead uint64
	for range b.N {
		b.StopTimer()
		queue := fake.New()
		ids, _ := queue.EnqueueN(ctx, n)
		w, err := jobwatch.New(queue, jobwatch.WithRefreshInterval(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		var wg sync.WaitGroup
		wg.Add(n)
		for _, id := range ids {
			go func() {
				defer wg.Done()
				if st, err := w.Wait(ctx, id); err != nil || st != statemachine.Successful {
					b.Errorf("Wait(%d) = %s, %v", id, st, err)
				}
			}()
		}
		waitPending(w, n)
		_ = queue.Apply(ctx, statemachine.Claim, ids...)
		_ = queue.Apply(ctx, statemachine.Complete, ids...)
		wg.Wait()

		b.StopTimer()
		s := w.Stats()
		reads += s.Reads.Total()
		idsRead += s.IDsRead
		_ = w.Close()
		_ = queue.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
	b.ReportMetric(float64(idsRead)/float64(b.N), "ids-read/op")
}

// waitPending polls until n ids are pending: registration has no signal.
func waitPending(w *jobwatch.Watcher, n int) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for w.Stats().Pending < n {
		<-tick.C
	}
}

// BenchmarkNotifyBurst has 1,000 waits pending on the fake backend and
// completes their jobs in 1,000 separate commits, so 1,000 notifications
// arrive back to back (debounce 0: reads run as fast as they can, and
// requests that arrive during a read coalesce into the next one). One
// operation is one burst, until every wait has returned. Reported per
// burst: time, allocations, status reads, ids read by id and statuses read
// from the change feed. With the feed a read costs what changed; without
// it (PgQueuer's way), every read re-reads every pending id.
func BenchmarkNotifyBurst(b *testing.B) {
	for _, feed := range []bool{true, false} {
		name := "feed"
		if !feed {
			name = "nofeed"
		}
		b.Run(name, func(b *testing.B) { benchmarkBurst(b, feed) })
	}
}

func benchmarkBurst(b *testing.B, feed bool) {
	const n = 1000
	ctx := context.Background()
	b.ReportAllocs()
	var reads, idsRead, changesRead uint64
	for range b.N {
		b.StopTimer()
		// A buffer for the whole burst: no overflow into a Resync (which
		// would read everything and hide the difference being measured).
		queue := fake.New(fake.WithBuffer(2 * n))
		ids, _ := queue.EnqueueN(ctx, n)
		_ = queue.Apply(ctx, statemachine.Claim, ids...)
		w, err := jobwatch.New(queue, jobwatch.WithRefreshInterval(time.Hour),
			jobwatch.WithDebounce(0), jobwatch.WithChangeFeed(feed))
		if err != nil {
			b.Fatal(err)
		}
		if err := queue.WaitListening(ctx, 1); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			states, err := w.WaitAll(ctx, ids)
			if err == nil && states[n-1] != statemachine.Successful {
				err = fmt.Errorf("last job %s", states[n-1])
			}
			done <- err
		}()
		waitStats(w, func(s jobwatch.Stats) bool { return s.Pending == n && s.IDsRead >= n })
		s0 := w.Stats()
		b.StartTimer()

		for _, id := range ids {
			_ = queue.Apply(ctx, statemachine.Complete, id)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		b.StopTimer()
		s := w.Stats()
		reads += s.Reads.Total() - s0.Reads.Total()
		idsRead += s.IDsRead - s0.IDsRead
		changesRead += s.ChangesRead - s0.ChangesRead
		_ = w.Close()
		_ = queue.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
	b.ReportMetric(float64(idsRead)/float64(b.N), "ids-read/op")
	b.ReportMetric(float64(changesRead)/float64(b.N), "changes-read/op")
}

// BenchmarkWaitAllFinished100k calls WaitAll over 100,000 jobs of the fake
// backend that have all finished already, on one long-lived Watcher with
// debounce 0 (the default 50ms would only add a sleep). One operation is
// one WaitAll: registering 100,000 waits, reading them in batches and
// settling them.
func BenchmarkWaitAllFinished100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	queue := fake.New()
	defer queue.Close()
	ids, _ := queue.EnqueueN(ctx, n)
	_ = queue.Apply(ctx, statemachine.Claim, ids...)
	_ = queue.Apply(ctx, statemachine.Complete, ids...)
	w, err := jobwatch.New(queue, jobwatch.WithRefreshInterval(time.Hour), jobwatch.WithDebounce(0))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := queue.WaitListening(ctx, 1); err != nil {
		b.Fatal(err)
	}
	s0 := w.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		states, err := w.WaitAll(ctx, ids)
		if err != nil || states[0] != statemachine.Successful || states[n-1] != statemachine.Successful {
			b.Fatalf("WaitAll = %v..., %v", states[:1], err)
		}
	}
	b.StopTimer()
	s := w.Stats()
	b.ReportMetric(float64(s.Reads.Total()-s0.Reads.Total())/float64(b.N), "reads/op")
	b.ReportMetric(float64(s.IDsRead-s0.IDsRead)/float64(b.N), "ids-read/op")
}

// waitStats polls until cond holds for w's Stats: reads and registrations
// send no signal.
func waitStats(w *jobwatch.Watcher, cond func(jobwatch.Stats) bool) {
	tick := time.NewTicker(100 * time.Microsecond)
	defer tick.Stop()
	for !cond(w.Stats()) {
		<-tick.C
	}
}
