package main

import (
	"context"
	"fmt"
	"io"
	"time"

	jwqueue "github.com/jobwatch/jobwatch/queue"
)

// runEnqueue enqueues --count jobs in one transaction and prints their ids,
// one per line.
func runEnqueue(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var conn connFlags
	var job jwqueue.NewJob
	var payload, dedupe string
	var count int
	fs := newFlags("enqueue", stderr)
	conn.register(fs)
	fs.StringVar(&job.Entrypoint, "entrypoint", "", "the job's entrypoint (required)")
	fs.StringVar(&payload, "payload", "", "the job's payload, as text")
	fs.IntVar(&job.Priority, "priority", 0, "priority: higher runs first")
	fs.IntVar(&count, "count", 1, "how many identical jobs to enqueue")
	fs.DurationVar(&job.ExecuteAfter, "delay", 0, "run no sooner than this from now")
	fs.StringVar(&dedupe, "dedupe-key", "", "refuse the job while another with this key is queued or picked (needs --count 1)")
	if err := parseArgsOnly(fs, args); err != nil {
		return exitUsage, err
	}
	switch {
	case job.Entrypoint == "":
		return exitUsage, fmt.Errorf("%w: --entrypoint is required", errUsage)
	case count < 1 || count > 100_000:
		return exitUsage, fmt.Errorf("%w: --count must be between 1 and 100000", errUsage)
	case job.ExecuteAfter < 0:
		return exitUsage, fmt.Errorf("%w: --delay must not be negative", errUsage)
	case dedupe != "" && count > 1:
		return exitUsage, fmt.Errorf("%w: --dedupe-key allows one job; use --count 1", errUsage)
	case job.Priority < -1<<31 || job.Priority > 1<<31-1:
		return exitUsage, fmt.Errorf("%w: --priority must fit a 32-bit integer", errUsage)
	}
	job.Payload, job.DedupeKey = []byte(payload), dedupe
	jobs := make([]jwqueue.NewJob, count)
	for i := range jobs {
		jobs[i] = job
	}
	q, closeDB, err := conn.open(ctx)
	if err != nil {
		return exitDB, err
	}
	defer closeDB()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ids, err := q.Enqueue(ctx, jobs...)
	if err != nil {
		return exitDB, conn.redact(&dbError{err})
	}
	for _, id := range ids {
		if _, err := fmt.Fprintln(stdout, id); err != nil {
			return exitUnsettled, &outputError{err}
		}
	}
	return exitOK, nil
}
