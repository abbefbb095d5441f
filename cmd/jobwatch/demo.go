package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

type demoConfig struct {
	conn          connFlags
	jobs, workers int
	failRate      float64
}

const demoHelp = `Enqueues jobs, works them with a few workers (some raise, some are canceled,
some held and requeued) and waits for all of them with a live progress bar
and a summary table. In memory unless --dsn is given (it ignores
$DATABASE_URL); on a database it uses a prefix of its own and drops it
afterwards.`

// demoCommand enqueues jobs, works them with a few workers and waits for
// all of them with a Watcher, drawing a progress bar and a summary.
func (a *app) demoCommand() *ffcli.Command {
	var cfg demoConfig
	return a.command("demo", "[flags]", "watch a queue work through jobs (in memory unless --dsn)", demoHelp,
		cfg.register,
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if err := noArgs(args); err != nil {
				return exitUsage, err
			}
			if err := cfg.check(); err != nil {
				return exitUsage, err
			}
			q, cleanup, err := cfg.openQueue(ctx, a.stdout)
			if err != nil {
				return exitFor(err), err
			}
			defer cleanup()
			return cfg.run(ctx, q, a.stdout, a.stderr)
		})
}

func (cfg *demoConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&cfg.conn.dsn, "dsn", "", "run on this PostgreSQL `URL` (own prefix, dropped afterwards) instead of in memory")
	fs.StringVar(&cfg.conn.driver, "driver", "pgx", "database `driver` with --dsn: pgx or pq")
	fs.StringVar(&cfg.conn.schema, "schema", "", "`schema` of the demo's objects with --dsn (default: the search_path)")
	fs.IntVar(&cfg.jobs, "jobs", 200, "number of jobs to enqueue")
	fs.IntVar(&cfg.workers, "workers", 4, "number of workers")
	fs.Float64Var(&cfg.failRate, "fail-rate", 0.1, "fraction of jobs that raise an exception (0..1)")
}

func (cfg *demoConfig) check() error {
	switch {
	case cfg.jobs < 1 || cfg.jobs > 100_000:
		return fmt.Errorf("%w: --jobs must be between 1 and 100000", errUsage)
	case cfg.workers < 1 || cfg.workers > 1000:
		return fmt.Errorf("%w: --workers must be between 1 and 1000", errUsage)
	case !(cfg.failRate >= 0 && cfg.failRate <= 1):
		return fmt.Errorf("%w: --fail-rate must be between 0 and 1", errUsage)
	}
	return nil
}

// openQueue returns the in-memory queue, or without it one on the database
// under a fresh prefix that cleanup drops again.
func (cfg *demoConfig) openQueue(ctx context.Context, stdout io.Writer) (demoQueue, func(), error) {
	if cfg.conn.dsn == "" {
		q := newMemQueue()
		fmt.Fprintln(stdout, "queue: in memory (give --dsn to use PostgreSQL)")
		return q, func() { q.Close() }, nil
	}
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	cfg.conn.prefix = "jobwatch_demo_" + hex.EncodeToString(tag[:]) + "_"
	q, closeDB, err := cfg.conn.openDSN(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := q.Install(ctx); err != nil {
		closeDB()
		return nil, nil, cfg.conn.redact(&dbError{err})
	}
	fmt.Fprintf(stdout, "queue: PostgreSQL, tables prefixed %q (dropped at the end)\n", cfg.conn.prefix)
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = q.Uninstall(ctx)
		closeDB()
	}
	return pgDemoQueue{q}, cleanup, nil
}

func (cfg demoConfig) run(ctx context.Context, q demoQueue, stdout, stderr io.Writer) (int, error) {
	w, err := jobwatch.New(q)
	if err != nil {
		return exitUsage, err
	}
	defer w.Close()
	ids, err := q.enqueue(ctx, cfg.jobs)
	if err != nil {
		return exitDB, cfg.conn.redact(&dbError{err})
	}
	fmt.Fprintf(stdout, "enqueued %d jobs; %d workers\n", len(ids), cfg.workers)

	start := time.Now()
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range cfg.workers {
		workers.Add(1)
		go func() { defer workers.Done(); demoWorker(ctx, q, stop, cfg.failRate) }()
	}
	defer workers.Wait()
	defer close(stop)

	bar := newProgress(stderr, len(ids), "auto")
	counts := map[statemachine.State]int{}
	for st, err := range w.WaitEach(ctx, ids) {
		if err != nil {
			bar.done()
			return exitInterrupt, err
		}
		counts[st.State]++
		bar.add(1)
	}
	bar.done()
	printSummary(stdout, counts, time.Since(start), w.Stats())
	return exitOK, nil // failed jobs are part of the show, not a failure of it
}

// demoWorker claims jobs and ends each one like a real worker might. A held
// job is requeued at once, showing that held is not final.
func demoWorker(ctx context.Context, q demoQueue, stop <-chan struct{}, failRate float64) {
	idle := time.NewTicker(5 * time.Millisecond)
	defer idle.Stop()
	for {
		id, ok, err := q.claim(ctx)
		if err != nil || !ok {
			select {
			case <-idle.C:
				continue
			case <-stop:
				return
			}
		}
		select {
		case <-time.After(time.Duration(1+mrand.IntN(10)) * time.Millisecond): // the job's work
		case <-stop:
			return
		}
		ev := statemachine.Complete
		switch r := mrand.Float64(); {
		case r < failRate:
			ev = statemachine.Error
		case r < failRate+0.05:
			ev = statemachine.Cancel
		case r < failRate+0.10:
			ev = statemachine.Hold
		}
		if q.apply(ctx, ev, id) == nil && ev == statemachine.Hold {
			_ = q.apply(ctx, statemachine.Requeue, id) // an operator looks and requeues it
		}
	}
}

func printSummary(w io.Writer, counts map[statemachine.State]int, elapsed time.Duration, s jobwatch.Stats) {
	fmt.Fprintf(w, "\nall jobs settled in %s\n\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "%-12s %6s\n", "STATUS", "JOBS")
	for _, st := range statemachine.States() {
		if st.Terminal() {
			fmt.Fprintf(w, "%-12s %6d\n", st, counts[st])
		}
	}
	fmt.Fprintf(w, "\nwatcher: %d notifications, %d status reads (%d ids); resolved by notification %d, by the wait's own read %d, by poll %d\n",
		s.Notifications, s.Reads.Total(), s.IDsRead, s.Resolved.Notification+s.Resolved.Resync, s.Resolved.Wait, s.Resolved.Poll)
}
