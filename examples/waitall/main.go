// Command waitall is the "wait for all jobs" helper pattern of PgQueuer's
// completion-tracking guide, in Go: block until every job settles and get
// their statuses in input order.
//
//	go run ./examples/waitall                 # in memory, no database needed
//	go run ./examples/waitall -dsn postgres://postgres@127.0.0.1:5432/test
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/examples/internal/examplequeue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// waitForAll blocks until every job in ids reaches a terminal state and
// returns their states in the order of ids (duplicates allowed). Python
// gathers one wait_for per job; WaitAll registers them all at once, so the
// Watcher reads their statuses in one query.
//
// Like the Python helper it makes a Watcher for the call. A long-running
// program should make one Watcher at start-up and share it instead: it then
// holds a single listening connection for every wait.
func waitForAll(ctx context.Context, driver jobwatch.Driver, ids []jobwatch.JobID, refresh, debounce time.Duration) (states []statemachine.State, err error) {
	w, err := jobwatch.New(driver, jobwatch.WithRefreshInterval(refresh), jobwatch.WithDebounce(debounce))
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	return w.WaitAll(ctx, ids)
}

func main() {
	log.SetFlags(0)
	dsn := flag.String("dsn", "", "PostgreSQL connection string; empty runs on the in-memory backend")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dsn); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	q, release, err := examplequeue.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer release()

	// The jobs of the guide's "Tracking Many Jobs at Once", fewer of them.
	kinds := []string{"render_img", "render_img", "render_img", "generate_pdf", "generate_pdf", "cleanup"}
	outcomes := []statemachine.Event{
		statemachine.Complete, statemachine.Error, statemachine.Complete,
		statemachine.Complete, statemachine.Complete, statemachine.Cancel,
	}
	ids, err := q.Enqueue(ctx, examplequeue.Jobs(kinds...)...)
	if err != nil {
		return err
	}
	fmt.Printf("waiting for %d jobs: %v\n", len(ids), ids)

	// Pretend workers end the jobs last to first, to show that the result
	// follows the input order, not the order of completion. A worker that
	// fails cancels ctx with its error, which ends the wait.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var workers sync.WaitGroup
	defer workers.Wait()
	for i, id := range ids {
		delay := time.Duration(len(ids)-i) * 30 * time.Millisecond
		workers.Go(func() {
			if err := work(ctx, q, id, outcomes[i], delay); err != nil {
				fail(err)
			}
		})
	}

	start := time.Now()
	states, err := waitForAll(ctx, q, ids, jobwatch.DefaultRefreshInterval, jobwatch.DefaultDebounce)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return cause // a worker's error, or why ctx ended
		}
		return err
	}
	for i, st := range states {
		fmt.Printf("job %d %-12s %s\n", ids[i], kinds[i], st)
	}
	fmt.Printf("all %d jobs settled after %s\n", len(ids), time.Since(start).Round(time.Millisecond))
	return nil
}

// work plays a worker: after delay it ends job id with ev (claiming it first
// unless ev is legal on a queued job, as cancel is).
func work(ctx context.Context, q examplequeue.Queue, id jobwatch.JobID, ev statemachine.Event, delay time.Duration) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(delay):
	}
	if !statemachine.Legal(statemachine.Queued, ev) {
		if err := q.Apply(ctx, statemachine.Claim, id); err != nil {
			return err
		}
	}
	return q.Apply(ctx, ev, id)
}
