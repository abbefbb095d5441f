package main

import (
	"context"
	"sync"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
)

// fakeQueue is a Queue over the in-memory backend, for main and for the
// tests. The fake stores no payloads, so the order only reaches work.
type fakeQueue struct {
	backend *fake.Backend
	// work, when set, is the pretend worker: it runs for every enqueued job
	// in a goroutine of its own, as a worker process would pick the job
	// up, and may end the job or leave it alone.
	work    func(id jobwatch.JobID, order string)
	workers sync.WaitGroup // wait on it before the test (or main) ends
}

// Enqueue implements Queue.
func (q *fakeQueue) Enqueue(ctx context.Context, order string) (jobwatch.JobID, error) {
	ids, err := q.backend.Enqueue(ctx, 1)
	if err != nil {
		return 0, err
	}
	if q.work != nil {
		q.workers.Go(func() { q.work(ids[0], order) })
	}
	return ids[0], nil
}
