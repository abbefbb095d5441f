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
		ids, _ := queue.Enqueue(ctx, n)
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
