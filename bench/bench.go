package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/dbconn"
)

// bench is one run.
type bench struct {
	cfg     *config
	stderr  io.Writer
	started time.Time

	t       *target
	workers *dbconn.DB // the workers' role, in this process: setup, debounce-0 completions
	counter counter    // the watcher role's statements
	pollSQL string     // the polling loop's query

	noCheckpoint bool
	warnings     []string
}

// runBench parses the flags, runs every measurement, and writes the
// report: Markdown on stdout (or JSON with --json -), and the files the
// flags name.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK, nil
	}
	if err != nil {
		return exitUsage, err
	}
	bars, err := loadBars(cfg.bars, !flagGiven(args, "bars"))
	if err != nil {
		return exitUsage, fmt.Errorf("%w: --bars: %v", errUsage, err)
	}
	b := &bench{cfg: cfg, stderr: stderr, started: time.Now()}
	if cfg.from != "" {
		rep, err := readReportFile(cfg.from)
		if err != nil {
			return exitUsage, fmt.Errorf("%w: --from: %v", errUsage, err)
		}
		return b.write(rep, bars, stdout)
	}
	rep, err := b.run(ctx)
	if err != nil {
		code, err := b.fail(ctx, err)
		return code, dbconn.Redactor(cfg.dsn).Error(err)
	}
	return b.write(rep, bars, stdout)
}

// write writes the report's outputs.
func (b *bench) write(rep *report, bars *barFile, stdout io.Writer) (int, error) {
	cfg := b.cfg
	if cfg.chart != "" {
		if err := writeChart(cfg.chart, rep); err != nil {
			return exitOutput, &outputError{fmt.Errorf("--chart: %w", err)}
		}
		b.logf("chart written to %s", cfg.chart)
	}
	if cfg.doc != "" {
		if err := rep.writeDoc(cfg.doc, cfg.chart, bars); err != nil {
			return exitOutput, &outputError{fmt.Errorf("--doc: %w", err)}
		}
		b.logf("generated part of %s rewritten", cfg.doc)
	}
	switch cfg.jsonOut {
	case "":
	case "-":
		if err := rep.writeJSON(stdout); err != nil {
			return exitOutput, &outputError{err}
		}
		return exitOK, nil
	default:
		f, err := os.Create(cfg.jsonOut)
		if err == nil {
			err = rep.writeJSON(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return exitOutput, &outputError{fmt.Errorf("--json: %w", err)}
		}
		b.logf("JSON written to %s", cfg.jsonOut)
	}
	rep.markdown(stdout, cfg.chart, bars)
	return exitOK, nil
}

// fail classifies err: an interruption, bad usage, or the database's.
func (b *bench) fail(ctx context.Context, err error) (int, error) {
	var db *dbError
	switch {
	case ctx.Err() != nil:
		return exitInterrupt, fmt.Errorf("interrupted: %w", context.Canceled)
	case errors.Is(err, errUsage):
		return exitUsage, err
	case errors.As(err, &db):
		return exitDB, err
	}
	return exitDB, &dbError{err}
}

// logf prints a progress line on standard error.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// run measures everything, in order, and cleans up after itself whatever
// happens (errors, Ctrl-C).
func (b *bench) run(ctx context.Context) (*report, error) {
	cfg := b.cfg
	rep := &report{Command: commandLine(cfg.args), Started: b.started, Machine: readMachine(), Params: cfg.params()}
	rep.EstimatedS = estimate(cfg).Seconds()
	b.logf("plan: sizes %v, series %v, spread %s, idle %s at %d jobs: about %s in all",
		cfg.sizes, cfg.series, cfg.spread, cfg.idle, cfg.idleJobs, estimate(cfg).Round(time.Second))
	t, err := openTarget(ctx, cfg, b.logf)
	if err != nil {
		return nil, err
	}
	defer t.close(b.logf)
	b.t, b.counter = t, counter{t: t, role: t.watcherRole}
	rep.Server = t.info
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	b.workers, err = dbconn.Open(wctx, dbconn.Config{DSN: t.workerDSN, Driver: "pgx", Schema: t.schema, MaxConns: 4})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("open the workers' pool: %w", err)
	}
	defer b.workers.Close()
	b.pollSQL = "SELECT status::text FROM " + b.workers.Queue.LogTable() + " WHERE job_id = $1 ORDER BY created DESC, id DESC LIMIT 1"

	if err := b.latency(ctx, rep); err != nil {
		return nil, err
	}
	for _, w := range cfg.sizes {
		for _, s := range cfg.series {
			row, err := b.scale(ctx, w, s)
			if err != nil {
				return nil, fmt.Errorf("%s at W=%d: %w", s.label(), w, err)
			}
			rep.Scale = append(rep.Scale, row)
			b.warnScale(row)
		}
	}
	if cfg.idle > 0 {
		b.logf("idle: setting up %d jobs", cfg.idleJobs)
		ids, err := b.prepare(ctx, cfg.idleJobs)
		if err != nil {
			return nil, err
		}
		for _, s := range cfg.series {
			row, err := b.idle(ctx, ids, s)
			if err != nil {
				return nil, fmt.Errorf("idle, %s: %w", s.label(), err)
			}
			rep.Idle = append(rep.Idle, row)
			if row.Evicted {
				b.warn("idle, %s: pg_stat_statements evicted entries during the phase: its counts may be low (raise pg_stat_statements.max)", s.label())
			}
		}
	}
	rep.Derived = derive(rep)
	rep.Warnings = b.warnings
	rep.LoadAvgEnd = readMachine().LoadAvg
	rep.ElapsedS = time.Since(b.started).Seconds()
	b.logf("done in %s (estimated %s)", time.Since(b.started).Round(time.Second), estimate(cfg).Round(time.Second))
	return rep, nil
}

// latency measures the floor and, for each jobwatch series, debounce 0.
func (b *bench) latency(ctx context.Context, rep *report) error {
	var series []seriesID
	for _, s := range b.cfg.series {
		if s != seriesPolling {
			series = append(series, s)
		}
	}
	n := b.cfg.samples
	ids, err := b.prepare(ctx, 1+n*len(series))
	if err != nil {
		return err
	}
	if rep.Floor, err = b.floor(ctx, ids[0]); err != nil {
		return err
	}
	for k, s := range series {
		row, err := b.debounce0(ctx, s, ids[1+k*n:1+(k+1)*n])
		if err != nil {
			return fmt.Errorf("debounce 0, %s: %w", s.label(), err)
		}
		rep.Debounce0 = append(rep.Debounce0, row)
	}
	return nil
}

// warn records a warning for the report and says it now.
func (b *bench) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.warnings = append(b.warnings, msg)
	b.logf("warning: %s", msg)
}

func (b *bench) warnScale(row scaleRow) {
	if row.Unresolved > 0 {
		b.warn("%s at W=%d: %d waits had not returned %s after the last commit; their latency counts as that", row.Label, row.W, row.Unresolved, b.cfg.drain)
	}
	if row.Errors > 0 {
		b.warn("%s at W=%d: %d waits ended with an error", row.Label, row.W, row.Errors)
	}
	if row.Evicted {
		b.warn("%s at W=%d: pg_stat_statements evicted entries during the run: its counts may be low (raise pg_stat_statements.max)", row.Label, row.W)
	}
}

func (c *config) params() params {
	return params{
		Driver: c.driver, Quick: c.quick, Sizes: c.sizes, Series: c.series,
		SpreadS: c.spread.Seconds(), IntervalMS: ms(c.interval), Batch: c.batch, Pool: c.pool,
		IdleS: c.idle.Seconds(), IdleJobs: c.idleJobs, Samples: c.samples, FloorSamples: c.floorSamples,
		PollIntervalMS: ms(c.pollInterval), DrainS: c.drain.Seconds(),
		DefaultDebounceMS: ms(jobwatch.DefaultDebounce), RefreshS: jobwatch.DefaultRefreshInterval.Seconds(),
		FullReadS: jobwatch.DefaultFullReadInterval.Seconds(),
	}
}

// commandLine is how the run was started, for the report, with any
// password in --dsn masked.
func commandLine(args []string) string {
	out := []string{"go", "run", "./bench"}
	for i, a := range args {
		if i > 0 && (args[i-1] == "--dsn" || args[i-1] == "-dsn") {
			a = dbconn.Redactor(a).String(a)
		} else if k, v, ok := strings.Cut(a, "="); ok && (k == "--dsn" || k == "-dsn") {
			a = k + "=" + dbconn.Redactor(v).String(v)
		}
		out = append(out, shellQuote(a))
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=,:@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// flagGiven reports whether args set flag name.
func flagGiven(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
