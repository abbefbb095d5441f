package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/jobwatch/jobwatch"
	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

const statusHelp = `Prints each job's current status without waiting, in wait's line formats;
"unknown" for a job the database does not know. With --json an exception
job's line carries its traceback; with --history every transition follows,
with its time (indented "<time> <state>" lines, or "history" in JSON). The
queue must be installed: status checks that first.

Exit status: 0; 4 when some job is unknown; 2 bad usage; 5 the database
cannot be read or the queue is not installed.`

type statusFlags struct {
	conn    connFlags
	json    bool
	history bool
}

func (a *app) statusCommand() *ffcli.Command {
	var f statusFlags
	return a.command("status", "[flags] ID...", "print jobs' current status without waiting", statusHelp,
		func(fs *flag.FlagSet) {
			f.conn.register(fs)
			fs.BoolVar(&f.json, "json", false, `print {"id":N,"status":"S"} lines`)
			fs.BoolVar(&f.history, "history", false, "also print each job's transitions, with their times")
		},
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			ids, err := readIDs(args, a.stdin)
			if err != nil {
				return exitUsage, err
			}
			q, closeDB, err := f.conn.openInstalled(ctx)
			if err != nil {
				return exitFor(err), err
			}
			defer closeDB()
			return f.print(ctx, q, ids, newLineWriter(a.stdout, f.json))
		})
}

// print reads every job's status in one read per batch and prints them,
// in input order.
func (f *statusFlags) print(ctx context.Context, q queue, ids []jobwatch.JobID, out *lineWriter) (int, error) {
	known := make(map[jobwatch.JobID]statemachine.State, len(ids))
	for start := 0; start < len(ids); start += jobwatch.DefaultBatchSize {
		batch := ids[start:min(start+jobwatch.DefaultBatchSize, len(ids))]
		statuses, err := q.FetchStatuses(ctx, batch)
		if err != nil {
			return exitDB, f.conn.redact(&dbError{err})
		}
		for _, st := range statuses {
			known[st.ID] = st.State
		}
	}
	code := exitOK
	for _, id := range ids {
		state, ok := known[id]
		line := jobLine{ID: id, Status: statusUnknown}
		if !ok {
			code = exitNotFound
		} else if err := f.details(ctx, q, state, &line); err != nil {
			return exitDB, err
		}
		if err := out.job(line); err != nil {
			return exitUnsettled, &outputError{err}
		}
	}
	return code, nil
}

// details fills in the job's status and what Inspect adds to it: the
// traceback of an exception job (--json) and the history (--history).
// Inspect is called only when one of them is wanted.
func (f *statusFlags) details(ctx context.Context, q queue, state statemachine.State, line *jobLine) error {
	line.Status = state.String()
	wantTB := f.json && state == statemachine.Exception
	if !wantTB && !f.history {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	info, err := q.Inspect(ctx, line.ID)
	switch {
	case errors.Is(err, jwqueue.ErrUnknownJob):
		return nil // gone since the status read
	case err != nil:
		return f.conn.redact(&dbError{fmt.Errorf("reading job %d: %w", int64(line.ID), err)})
	}
	if wantTB {
		line.Traceback = info.Traceback()
	}
	if f.history {
		line.History = append([]jwqueue.Transition{}, info.History...)
	}
	return nil
}
