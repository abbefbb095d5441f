// Command waitfirst is the "wait for first job" helper pattern of PgQueuer's
// completion-tracking guide, in Go: return as soon as any of several jobs
// settles, and drop the other waits.
//
//	go run ./examples/waitfirst                 # in memory, no database needed
//	go run ./examples/waitfirst -dsn postgres://postgres@127.0.0.1:5432/test
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/examples/internal/examplequeue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// waitForFirst returns the status of the first of ids to reach a terminal
// state, as soon as it does. The waits on the others are dropped then (the
// Python helper cancels their futures); the jobs themselves go on, so
// cancel them if their work is no longer wanted.
//
// Like the Python helper it makes a Watcher for the call. A long-running
// program should make one Watcher at start-up and share it instead: it then
// holds a single listening connection for every wait.
func waitForFirst(ctx context.Context, driver jobwatch.Driver, ids []jobwatch.JobID, refresh, debounce time.Duration) (first jobwatch.Status, err error) {
	w, err := jobwatch.New(driver, jobwatch.WithRefreshInterval(refresh), jobwatch.WithDebounce(debounce))
	if err != nil {
		return jobwatch.Status{}, err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	// WaitAny is WaitEach stopped at its first settled job; range over
	// WaitEach instead to handle every job as it settles.
	return w.WaitAny(ctx, ids)
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

	// The same file is fetched from three mirrors; the first copy wins.
	mirrors := []string{"mirror-eu", "mirror-us", "mirror-asia"}
	takes := []time.Duration{600 * time.Millisecond, 100 * time.Millisecond, 400 * time.Millisecond}
	ids, err := q.Enqueue(ctx, examplequeue.Jobs(mirrors...)...)
	if err != nil {
		return err
	}
	fmt.Printf("racing %d downloads: %v\n", len(ids), ids)

	// Pretend workers claim every job at once and complete each one when
	// its download is done. Cancelling workCtx stops the downloads still
	// running; a worker that fails cancels it with its error.
	workCtx, stopWork := context.WithCancelCause(ctx)
	defer stopWork(nil)
	var workers sync.WaitGroup
	defer workers.Wait()
	for i, id := range ids {
		workers.Go(func() {
			if err := download(workCtx, q, id, takes[i]); err != nil {
				stopWork(err)
			}
		})
	}

	start := time.Now()
	first, err := waitForFirst(workCtx, q, ids, jobwatch.DefaultRefreshInterval, jobwatch.DefaultDebounce)
	if err != nil {
		if cause := context.Cause(workCtx); cause != nil {
			return cause // a worker's error, or why ctx ended
		}
		return err
	}
	i := slices.Index(ids, first.ID)
	fmt.Printf("first to settle: job %d (%s) %s after %s\n", first.ID, mirrors[i], first.State, time.Since(start).Round(10*time.Millisecond))

	// Nobody waits for the other downloads any more; stop them and cancel
	// their jobs, so the queue records why they never finished.
	stopWork(nil)
	workers.Wait()
	for _, id := range ids {
		err := q.Apply(ctx, statemachine.Cancel, id)
		if err != nil && !errors.Is(err, statemachine.ErrIllegalTransition) { // illegal: it had finished
			return err
		}
	}
	final, err := q.FetchStatuses(ctx, ids)
	if err != nil {
		return err
	}
	slices.SortFunc(final, func(a, b jobwatch.Status) int { return cmp.Compare(a.ID, b.ID) })
	fmt.Printf("in the end: %v\n", final)
	return nil
}

// download plays a worker: it claims job id, works for d and completes the
// job, unless ctx ends first, which leaves the job picked.
func download(ctx context.Context, q examplequeue.Queue, id jobwatch.JobID, d time.Duration) error {
	if err := q.Apply(ctx, statemachine.Claim, id); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(d):
	}
	return q.Apply(ctx, statemachine.Complete, id)
}
