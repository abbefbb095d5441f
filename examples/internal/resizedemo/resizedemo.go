// Package resizedemo is the part examples/pgx and examples/pq share: with a
// queue already installed, it enqueues a few "resize" jobs, lets a worker
// goroutine run them through the job API, and waits for their outcomes with
// Wait and WaitAll, as a service would. Each example only opens its
// backend; everything here runs unchanged on either.
package resizedemo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Queue is what the demo needs of a backend: the Driver to watch and the
// job API. backends/pgx and backends/pq both have it.
type Queue interface {
	jobwatch.Driver
	queue.Queue
}

// Run runs the demo on q, printing what happens. It returns the first
// error of waiting or of the worker; a job's failure is an outcome, not an
// error.
func Run(ctx context.Context, q Queue) (err error) {
	// One Watcher serves every wait in the program; it holds one listening
	// connection however many goroutines wait.
	w, err := jobwatch.New(q)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.Close()) }()

	images := []string{"cat.png", "corrupt.png", "dog.png"}
	jobs := make([]queue.NewJob, len(images))
	for i, img := range images {
		jobs[i] = queue.NewJob{Entrypoint: "resize", Payload: []byte(img)}
	}
	ids, err := q.Enqueue(ctx, jobs...) // one transaction for all
	if err != nil {
		return err
	}
	fmt.Printf("enqueued %d resize jobs: %v\n", len(ids), ids)

	// The worker runs beside us, as a PgQueuer worker process (Python or
	// Go) would. It may finish a job before we start waiting for it: the
	// Watcher reads the job's status when a wait starts, so that is fine.
	workCtx, stopWork := context.WithCancel(ctx)
	var worker sync.WaitGroup
	var workErr error
	worker.Go(func() { workErr = work(workCtx, q) })
	defer worker.Wait()
	defer stopWork()

	// Bound every wait: the Watcher waits as long as ctx lets it.
	waitCtx, cancelWait := context.WithTimeout(ctx, 10*time.Second)
	defer cancelWait()

	state, err := w.Wait(waitCtx, ids[0])
	if err != nil { // waiting failed (deadline, closed, not found); not the job
		return err
	}
	fmt.Printf("Wait: job %d (%s) ended %s\n", ids[0], images[0], state)

	states, err := w.WaitAll(waitCtx, ids)
	if err != nil {
		return err
	}
	for i, st := range states { // input order, whatever order they finished in
		fmt.Printf("WaitAll: job %d (%s) ended %s\n", ids[i], images[i], st)
		if st != statemachine.Exception {
			continue
		}
		// Why it failed is one more call: the worker's traceback.
		info, err := q.Inspect(ctx, ids[i])
		if err != nil {
			return err
		}
		if tb := info.Traceback(); tb != nil {
			fmt.Printf("Inspect: job %d failed: %s\n", ids[i], tb.ExceptionMessage)
		}
	}

	// Nobody works on "report" jobs, so this wait runs into its deadline.
	// Giving up waiting does not touch the job; cancelling it does.
	report, err := q.Enqueue(ctx, queue.NewJob{Entrypoint: "report"})
	if err != nil {
		return err
	}
	shortCtx, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := w.Wait(shortCtx, report[0]); !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("wait on the report job: got %v, want a deadline", err)
	}
	fmt.Printf("Wait: job %d (report) still pending after 300ms; cancelling it\n", report[0])
	if err := q.Cancel(ctx, report[0]); err != nil {
		return err
	}
	if state, err = w.Wait(waitCtx, report[0]); err != nil {
		return err
	}
	fmt.Printf("Wait: job %d (report) ended %s\n", report[0], state)

	s := w.Stats()
	fmt.Printf("watcher: %d notifications, %d status reads\n", s.Notifications, s.Reads.Total())

	stopWork()
	worker.Wait()
	return workErr
}

// work plays a PgQueuer worker for "resize" jobs until ctx ends: it claims
// queued jobs and completes them, or records an exception with a traceback.
func work(ctx context.Context, b queue.Queue) error {
	// A real worker would LISTEN for new jobs; polling keeps this short.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		claimed, err := b.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"resize"}, Limit: 10})
		if ctx.Err() != nil {
			return nil // asked to stop; whatever failed, failed because of it
		}
		if err != nil {
			return err
		}
		for _, job := range claimed {
			// A job's failure is recorded in the queue, not returned: the
			// worker goes on with the next job.
			if failure := resize(string(job.Payload)); failure != nil {
				err = b.Exception(ctx, job.ID, queue.TracebackOf(failure))
			} else {
				err = b.Complete(ctx, job.ID)
			}
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
		if len(claimed) > 0 {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// resize is the job's work.
func resize(image string) error {
	if strings.HasPrefix(image, "corrupt") {
		return fmt.Errorf("%s: not a PNG file", image)
	}
	return nil
}
