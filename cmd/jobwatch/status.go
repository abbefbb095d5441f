package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/jobwatch/jobwatch"
)

// runStatus prints each job's current status without waiting: one read,
// `unknown` for a job the database does not know. Exit: 0, or 4 when any
// job is unknown (2 usage, 5 database).
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var conn connFlags
	var asJSON bool
	fs := newFlags("status", stderr)
	conn.register(fs)
	fs.BoolVar(&asJSON, "json", false, `print {"id":N,"status":"S"} lines`)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: jobwatch status [flags] ID...   (ids from standard input when none, or -)")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	ids, err := readIDs(fs.Args(), os.Stdin)
	if err != nil {
		return exitUsage, err
	}
	q, closeDB, err := conn.open(ctx)
	if err != nil {
		return exitDB, err
	}
	defer closeDB()
	known := make(map[jobwatch.JobID]string, len(ids))
	for start := 0; start < len(ids); start += jobwatch.DefaultBatchSize {
		batch := ids[start:min(start+jobwatch.DefaultBatchSize, len(ids))]
		statuses, err := q.FetchStatuses(ctx, batch)
		if err != nil {
			return exitDB, conn.redact(&dbError{err})
		}
		for _, st := range statuses {
			known[st.ID] = st.State.String()
		}
	}
	out := newLineWriter(stdout, asJSON)
	code := exitOK
	for _, id := range ids {
		status, ok := known[id]
		if !ok {
			status, code = statusUnknown, exitNotFound
		}
		if err := out.line(id, status); err != nil {
			return exitUnsettled, &outputError{err}
		}
	}
	return code, nil
}
