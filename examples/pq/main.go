// Command pq waits for PostgreSQL jobs through lib/pq and sqlx: it installs
// a throwaway queue, enqueues a few jobs, lets a worker goroutine run them,
// and waits for their outcomes with Wait and WaitAll. It is examples/pgx
// with the other driver; only the connection differs.
//
//	go run ./examples/pq    # DSN from $DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver for sqlx.Open

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func main() {
	log.SetFlags(0)
	// Ctrl-C cancels ctx instead of killing the process, so the deferred
	// uninstall in run still cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDSN
	}
	if err := run(ctx, dsn); err != nil {
		log.Fatal(err)
	}
}

// run holds the example, so that its defers (closing the pool, dropping the
// queue) run before main exits, even on error; log.Fatal would skip them.
func run(ctx context.Context, dsn string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// sql.Open connects lazily; a bad DSN or a server that is down should
	// fail here, with a clear error, rather than in the middle of the example.
	if err := db.PingContext(ctx); err != nil {
		return err
	}

	// A prefix of our own gives us private tables and a private NOTIFY
	// channel, so the example never touches a real PgQueuer queue in the
	// same database. In production you would use the defaults.
	prefix := "jwex_" + strings.ToLower(rand.Text()[:8]) + "_"
	// The DSN is needed too: lib/pq's listener opens its own connection,
	// outside the pool, for LISTEN.
	backend, err := pq.New(db, dsn, pq.WithPrefix(prefix))
	if err != nil {
		return err
	}
	if _, err := backend.Install(ctx); err != nil {
		return err
	}
	fmt.Printf("installed a queue under prefix %s\n", prefix)
	defer func() {
		// ctx may be over by now (deadline, Ctrl-C); the tables must go anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := backend.Uninstall(ctx); err != nil {
			log.Printf("uninstall: %v", err)
			return
		}
		fmt.Printf("uninstalled the queue under prefix %s\n", prefix)
	}()

	// One Watcher serves every wait in the program; it holds one listening
	// connection however many goroutines wait.
	w, err := jobwatch.New(backend)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.Close()) }()

	images := []string{"cat.png", "corrupt.png", "dog.png"}
	jobs := make([]queue.NewJob, len(images))
	for i, img := range images {
		jobs[i] = queue.NewJob{Entrypoint: "resize", Payload: []byte(img)}
	}
	ids, err := backend.Enqueue(ctx, jobs...) // one transaction for all
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
	worker.Go(func() { workErr = work(workCtx, backend) })
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
		info, err := backend.Inspect(ctx, ids[i])
		if err != nil {
			return err
		}
		if tb := info.Traceback(); tb != nil {
			fmt.Printf("Inspect: job %d failed: %s\n", ids[i], tb.ExceptionMessage)
		}
	}

	// Nobody works on "report" jobs, so this wait runs into its deadline.
	// Giving up waiting does not touch the job; cancelling it does.
	report, err := backend.Enqueue(ctx, queue.NewJob{Entrypoint: "report"})
	if err != nil {
		return err
	}
	shortCtx, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := w.Wait(shortCtx, report[0]); !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("wait on the report job: got %v, want a deadline", err)
	}
	fmt.Printf("Wait: job %d (report) still pending after 300ms; cancelling it\n", report[0])
	if err := backend.Cancel(ctx, report[0]); err != nil {
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
func work(ctx context.Context, b *pq.Backend) error {
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
