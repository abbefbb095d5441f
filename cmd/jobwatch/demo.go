package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

type demoConfig struct {
	jobs, workers int
	failRate      float64
}

// runDemo enqueues jobs on an in-memory queue, works them with a few
// workers (some fail, some are held and requeued, some canceled), and waits
// for all of them with a Watcher.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var cfg demoConfig
	fs := newFlags("demo", stderr)
	fs.IntVar(&cfg.jobs, "jobs", 200, "number of jobs to enqueue")
	fs.IntVar(&cfg.workers, "workers", 4, "number of workers")
	fs.Float64Var(&cfg.failRate, "fail-rate", 0.1, "fraction of jobs that raise an exception (0..1)")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	switch {
	case fs.NArg() > 0:
		return exitUsage, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case cfg.jobs < 1 || cfg.jobs > 1_000_000:
		return exitUsage, fmt.Errorf("%w: --jobs must be between 1 and 1000000", errUsage)
	case cfg.workers < 1 || cfg.workers > 1000:
		return exitUsage, fmt.Errorf("%w: --workers must be between 1 and 1000", errUsage)
	case !(cfg.failRate >= 0 && cfg.failRate <= 1):
		return exitUsage, fmt.Errorf("%w: --fail-rate must be between 0 and 1", errUsage)
	}
	return demo(ctx, cfg, stdout, stderr)
}

func demo(ctx context.Context, cfg demoConfig, stdout, stderr io.Writer) (int, error) {
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue)
	if err != nil {
		return exitUsage, err
	}
	defer w.Close()

	ids, err := queue.Enqueue(ctx, cfg.jobs)
	if err != nil {
		return exitUsage, err
	}
	fmt.Fprintf(stdout, "enqueued %d jobs on the in-memory queue; %d workers\n", len(ids), cfg.workers)

	start := time.Now()
	work := make(chan jobwatch.JobID, len(ids))
	for _, id := range ids {
		work <- id
	}
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range cfg.workers {
		workers.Add(1)
		go func() { defer workers.Done(); demoWorker(ctx, queue, work, stop, cfg.failRate) }()
	}
	defer workers.Wait()
	defer close(stop)

	bar := newProgress(stderr, len(ids))
	counts := map[statemachine.State]int{}
	var mu sync.Mutex
	var waits sync.WaitGroup
	for _, id := range ids {
		waits.Add(1)
		go func() {
			defer waits.Done()
			st, err := w.Wait(ctx, id)
			if err != nil {
				return
			}
			mu.Lock()
			counts[st]++
			mu.Unlock()
			bar.add(1)
		}()
	}
	waits.Wait()
	bar.done()
	if err := ctx.Err(); err != nil {
		return exitUnsettle, err
	}
	printSummary(stdout, counts, time.Since(start), w.Stats())
	return exitOK, nil // failed jobs are part of the show, not a failure of it
}

// demoWorker claims jobs and ends each one like a real worker might. A held
// job is requeued and put back on the queue, showing that held is not final.
func demoWorker(ctx context.Context, queue *fake.Backend, work chan jobwatch.JobID, stop <-chan struct{}, failRate float64) {
	for {
		var id jobwatch.JobID
		select {
		case id = <-work:
		case <-stop:
			return
		}
		if err := queue.Apply(ctx, statemachine.Claim, id); err != nil {
			continue
		}
		time.Sleep(time.Duration(1+rand.IntN(10)) * time.Millisecond) // the job's work
		ev := statemachine.Complete
		switch r := rand.Float64(); {
		case r < failRate:
			ev = statemachine.Error
		case r < failRate+0.05:
			ev = statemachine.Cancel
		case r < failRate+0.10:
			ev = statemachine.Hold
		}
		if err := queue.Apply(ctx, ev, id); err != nil || ev != statemachine.Hold {
			continue
		}
		// An operator looks at the held job and requeues it.
		if queue.Apply(ctx, statemachine.Requeue, id) == nil {
			select {
			case work <- id:
			case <-stop:
				return
			}
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
	fmt.Fprintf(w, "\nwatcher: %d notifications, %d status reads (%d ids), resolved by notification %d, by wait %d, by poll %d\n",
		s.Notifications, s.Reads.Total(), s.IDsRead, s.Resolved.Notification, s.Resolved.Wait, s.Resolved.Poll)
}
