package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

type waitFlags struct {
	conn         connFlags
	timeout      time.Duration
	debounce     time.Duration
	refresh      time.Duration
	grace        time.Duration
	settleOnHold bool
	json         bool
	progress     string
	verbose      bool
}

// runWait waits until every job settles, printing each as it does.
// Exit: 2 usage, 5 database, else 3 timeout, else 4 not found, else 1 if
// any job settled other than successful, else 0.
func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var f waitFlags
	fs := newFlags("wait", stderr)
	f.conn.register(fs)
	fs.DurationVar(&f.timeout, "timeout", 0, "give up after this long (0: never); unsettled jobs print as pending")
	fs.DurationVar(&f.debounce, "debounce", jobwatch.DefaultDebounce, "gather notifications this long into one status read")
	fs.DurationVar(&f.refresh, "refresh", jobwatch.DefaultRefreshInterval, "safety-net poll interval")
	fs.DurationVar(&f.grace, "not-found-grace", jobwatch.DefaultNotFoundGrace, "a job unknown this long prints as not_found")
	fs.BoolVar(&f.settleOnHold, "settle-on-hold", false, "let a held (failed) job count as settled")
	fs.BoolVar(&f.json, "json", false, `print {"id":N,"status":"S"} lines`)
	fs.StringVar(&f.progress, "progress", "auto", "progress bar on standard error: auto (on a terminal, more than one id), always or never")
	fs.BoolVar(&f.verbose, "v", false, "log listener and read problems to standard error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: jobwatch wait [flags] ID...   (ids from standard input when none, or -)")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	if err := f.check(); err != nil {
		return exitUsage, err
	}
	ids, err := readIDs(fs.Args(), os.Stdin)
	if err != nil {
		return exitUsage, err
	}
	q, closeDB, err := f.conn.open(ctx)
	if err != nil {
		return exitDB, err
	}
	defer closeDB()
	return f.wait(ctx, q, ids, stdout, stderr)
}

func (f waitFlags) check() error {
	switch {
	case f.timeout < 0:
		return fmt.Errorf("%w: --timeout must not be negative", errUsage)
	case f.debounce < 0:
		return fmt.Errorf("%w: --debounce must not be negative", errUsage)
	case f.refresh <= 0:
		return fmt.Errorf("%w: --refresh must be positive", errUsage)
	case f.grace < 0:
		return fmt.Errorf("%w: --not-found-grace must not be negative", errUsage)
	case f.progress != "auto" && f.progress != "always" && f.progress != "never":
		return fmt.Errorf("%w: --progress must be auto, always or never", errUsage)
	}
	return nil
}

func (f waitFlags) options(stderr io.Writer) []jobwatch.Option {
	opts := []jobwatch.Option{
		jobwatch.WithDebounce(f.debounce),
		jobwatch.WithRefreshInterval(f.refresh),
		jobwatch.WithNotFoundGrace(f.grace),
		jobwatch.WithSettleOnHold(f.settleOnHold),
	}
	if f.verbose {
		opts = append(opts, jobwatch.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))))
	}
	return opts
}

func (f waitFlags) wait(ctx context.Context, d jobwatch.Driver, ids []jobwatch.JobID, stdout, stderr io.Writer) (int, error) {
	w, err := jobwatch.New(d, f.options(stderr)...)
	if err != nil {
		return exitUsage, fmt.Errorf("%w: %v", errUsage, err)
	}
	defer w.Close()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	out := newLineWriter(stdout, f.json)
	bar := newProgress(stderr, len(ids), f.progress)
	defer bar.done()

	settled := make(map[jobwatch.JobID]bool, len(ids))
	var notFound, unsuccessful bool
	var stopped error
	for st, err := range w.WaitEach(ctx, ids) {
		bar.erase()
		switch {
		case errors.Is(err, jobwatch.ErrNotFound):
			notFound = true
			settled[st.ID] = true
			err = out.line(st.ID, statusNotFound)
		case err != nil:
			stopped = err
			continue
		default:
			unsuccessful = unsuccessful || st.State != statemachine.Successful
			settled[st.ID] = true
			err = out.line(st.ID, st.State.String())
		}
		if err != nil {
			return exitUnsettled, &outputError{err} // e.g. a closed pipe
		}
		bar.add(1)
	}
	switch {
	case errors.Is(stopped, context.DeadlineExceeded):
		bar.erase()
		for _, id := range ids {
			if !settled[id] {
				_ = out.line(id, statusPending)
			}
		}
		return exitTimeout, nil
	case stopped != nil:
		return exitInterrupt, stopped
	case notFound:
		return exitNotFound, nil
	case unsuccessful:
		return exitUnsettled, nil
	}
	return exitOK, nil
}
