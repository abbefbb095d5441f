package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	jwqueue "github.com/jobwatch/jobwatch/queue"
)

type enqueueFlags struct {
	conn            connFlags
	job             jwqueue.NewJob
	payload, dedupe string
	count           int
}

func (a *app) enqueueCommand() *ffcli.Command {
	var f enqueueFlags
	return a.command("enqueue", "--entrypoint NAME [flags]", "enqueue jobs and print their ids",
		"Enqueues --count identical jobs in one transaction and prints their ids, one per line.",
		f.register,
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if err := noArgs(args); err != nil {
				return exitUsage, err
			}
			if err := f.check(); err != nil {
				return exitUsage, err
			}
			q, closeDB, err := f.conn.open(ctx)
			if err != nil {
				return exitFor(err), err
			}
			defer closeDB()
			return a.enqueue(ctx, &f, q)
		})
}

func (f *enqueueFlags) register(fs *flag.FlagSet) {
	f.conn.register(fs)
	fs.StringVar(&f.job.Entrypoint, "entrypoint", "", "the job's entrypoint `name` (required)")
	fs.StringVar(&f.payload, "payload", "", "the job's payload, as text")
	fs.IntVar(&f.job.Priority, "priority", 0, "priority: higher runs first")
	fs.IntVar(&f.count, "count", 1, "how many identical jobs to enqueue")
	durationFlag(fs, &f.job.ExecuteAfter, "delay", 0, "run no sooner than this from now")
	fs.StringVar(&f.dedupe, "dedupe-key", "", "refuse the job while another with this `key` is queued or picked (needs --count 1)")
}

func (f *enqueueFlags) check() error {
	switch {
	case f.job.Entrypoint == "":
		return fmt.Errorf("%w: --entrypoint is required", errUsage)
	case f.count < 1 || f.count > 100_000:
		return fmt.Errorf("%w: --count must be between 1 and 100000", errUsage)
	case f.job.ExecuteAfter < 0:
		return fmt.Errorf("%w: --delay must not be negative", errUsage)
	case f.dedupe != "" && f.count > 1:
		return fmt.Errorf("%w: --dedupe-key allows one job; use --count 1", errUsage)
	case f.job.Priority < -1<<31 || f.job.Priority > 1<<31-1:
		return fmt.Errorf("%w: --priority must fit a 32-bit integer", errUsage)
	}
	return nil
}

func (a *app) enqueue(ctx context.Context, f *enqueueFlags, q queue) (int, error) {
	job := f.job
	job.Payload, job.DedupeKey = []byte(f.payload), f.dedupe
	jobs := make([]jwqueue.NewJob, f.count)
	for i := range jobs {
		jobs[i] = job
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ids, err := q.Enqueue(ctx, jobs...)
	if err != nil {
		return exitDB, f.conn.redact(&dbError{err})
	}
	for _, id := range ids {
		if _, err := fmt.Fprintln(a.stdout, id); err != nil {
			return exitUnsettled, &outputError{err}
		}
	}
	return exitOK, nil
}
