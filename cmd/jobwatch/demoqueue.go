package main

import (
	"context"
	"sync"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// demoQueue is what the demo needs: a Driver to watch, and a worker's view
// of the queue.
type demoQueue interface {
	jobwatch.Driver
	enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error)
	claim(ctx context.Context) (jobwatch.JobID, bool, error) // one queued job, if any
	apply(ctx context.Context, ev statemachine.Event, id jobwatch.JobID) error
}

const demoEntrypoint = "demo"

// pgDemoQueue works jobs on PostgreSQL through the backend's lifecycle.
type pgDemoQueue struct{ queue }

func (q pgDemoQueue) enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]jwqueue.NewJob, n)
	for i := range jobs {
		jobs[i] = jwqueue.NewJob{Entrypoint: demoEntrypoint}
	}
	return q.Enqueue(ctx, jobs...)
}

func (q pgDemoQueue) claim(ctx context.Context) (jobwatch.JobID, bool, error) {
	jobs, err := q.Claim(ctx, jwqueue.ClaimRequest{Entrypoints: []string{demoEntrypoint}, Limit: 1})
	if err != nil || len(jobs) == 0 {
		return 0, false, err
	}
	return jobwatch.JobID(jobs[0].ID), true, nil
}

func (q pgDemoQueue) apply(ctx context.Context, ev statemachine.Event, id jobwatch.JobID) error {
	return q.Apply(ctx, ev, id)
}

// memQueue works jobs on the in-memory backend, which has no claim query:
// queued ids wait in a FIFO.
type memQueue struct {
	*fake.Backend
	mu     sync.Mutex
	queued []jobwatch.JobID
}

func newMemQueue() *memQueue { return &memQueue{Backend: fake.New()} }

func (q *memQueue) enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	ids, err := q.EnqueueN(ctx, n)
	q.push(ids...)
	return ids, err
}

func (q *memQueue) push(ids ...jobwatch.JobID) {
	q.mu.Lock()
	q.queued = append(q.queued, ids...)
	q.mu.Unlock()
}

func (q *memQueue) claim(ctx context.Context) (jobwatch.JobID, bool, error) {
	q.mu.Lock()
	if len(q.queued) == 0 {
		q.mu.Unlock()
		return 0, false, nil
	}
	id := q.queued[0]
	q.queued = q.queued[1:]
	q.mu.Unlock()
	return id, true, q.Apply(ctx, statemachine.Claim, id)
}

func (q *memQueue) apply(ctx context.Context, ev statemachine.Event, id jobwatch.JobID) error {
	err := q.Apply(ctx, ev, id)
	if err == nil && ev == statemachine.Requeue {
		q.push(id)
	}
	return err
}
