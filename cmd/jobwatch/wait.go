package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/jobwatch/jobwatch"
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
	health       healthTiming
}

const waitHelp = `Waits until every job has settled, printing "<id> <status>" (with --json,
{"id":N,"status":"S"}) for each as soon as it does; with --json an exception
job's line carries its traceback. Ids come from the arguments, or from
standard input when there are none or the only one is "-". The queue must be
installed: wait checks that first.

A job never found prints "<id> not_found". At the timeout each unsettled job
prints "<id> pending <last seen state>" (queued, picked, failed, or unseen when
no read found it), "last_state" in JSON. While the database cannot be read,
standard error says why, at once and then every minute.

Exit status (the first that applies, in this order):
  2  bad usage or input, or no database given
  5  the database cannot be read: unreachable, queue not installed, a driver
     error, or at the timeout the latest read had failed
  3  the timeout hit before every job settled
  4  some job was never found
  1  some job settled otherwise than successful (exception, canceled, deleted,
     or failed with --settle-on-hold)
  0  every job successful`

func (a *app) waitCommand() *ffcli.Command {
	var f waitFlags
	f.health = defaultHealthTiming
	return a.command("wait", "[flags] ID...", "wait until jobs settle, printing each as it does", waitHelp,
		func(fs *flag.FlagSet) { f.register(fs) },
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if err := f.check(); err != nil {
				return exitUsage, err
			}
			ids, err := readIDs(args, a.stdin)
			if err != nil {
				return exitUsage, err
			}
			q, closeDB, err := f.conn.openInstalled(ctx)
			if err != nil {
				return exitFor(err), err
			}
			defer closeDB()
			r := &waitRun{
				f:              f,
				inspect:        q.Inspect,
				checkInstalled: func(ctx context.Context) error { return f.conn.checkInstalled(ctx, q) },
				redact:         func(s string) string { return a.redactor.String(f.conn.redactText(s)) },
			}
			return r.run(ctx, q, ids, a.stdout, a.stderr)
		})
}

func (f *waitFlags) register(fs *flag.FlagSet) {
	f.conn.register(fs)
	durationFlag(fs, &f.timeout, "timeout", 0, "give up after this long (default: never); unsettled jobs print as pending")
	durationFlag(fs, &f.debounce, "debounce", jobwatch.DefaultDebounce, "gather notifications this long into one status read")
	durationFlag(fs, &f.refresh, "refresh", jobwatch.DefaultRefreshInterval, "safety-net poll interval")
	durationFlag(fs, &f.grace, "not-found-grace", jobwatch.DefaultNotFoundGrace, "a job unknown this long prints as not_found")
	fs.BoolVar(&f.settleOnHold, "settle-on-hold", false, "let a held (failed) job count as settled")
	fs.BoolVar(&f.json, "json", false, `print {"id":N,"status":"S"} lines`)
	fs.StringVar(&f.progress, "progress", "auto", "progress bar on standard error: auto (on a terminal, more than one id), always or never")
	fs.BoolVar(&f.verbose, "v", false, "log listener and read problems to standard error")
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

func (f waitFlags) options(log io.Writer) []jobwatch.Option {
	opts := []jobwatch.Option{
		jobwatch.WithDebounce(f.debounce),
		jobwatch.WithRefreshInterval(f.refresh),
		jobwatch.WithNotFoundGrace(f.grace),
		jobwatch.WithSettleOnHold(f.settleOnHold),
	}
	if f.verbose {
		opts = append(opts, jobwatch.WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	}
	return opts
}
