package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jobwatch/jobwatch"
)

// benchConfig holds the bench's flags.
type benchConfig struct {
	conn            connFlags
	sizes           []int
	batch           int
	samples         int
	floorSamples    int
	pollInterval    time.Duration
	baselineTimeout time.Duration
	finished        int
	pool            int
	json            bool
	svg             string
	quick           bool
}

// sizesFlag parses a comma-separated list of positive counts.
type sizesFlag struct{ v *[]int }

func (s sizesFlag) String() string {
	if s.v == nil {
		return ""
	}
	parts := make([]string, len(*s.v))
	for i, n := range *s.v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (s sizesFlag) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1_000_000 {
			return fmt.Errorf("%q is not a count between 1 and 1000000", f)
		}
		out = append(out, n)
	}
	*s.v = out
	return nil
}

// runBench measures jobwatch against a real PostgreSQL, side by side with a
// loop that polls each job's status, and prints the tables (or one JSON
// document with --json), optionally drawing a chart with --svg.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	cfg := benchConfig{sizes: []int{1000, 10_000, 100_000}}
	fs := newFlags("bench", stderr)
	cfg.conn.register(fs)
	fs.Lookup("prefix").Usage = "ignored: the bench always works under a fresh prefix of its own, dropped at the end"
	fs.Var(sizesFlag{&cfg.sizes}, "sizes", "numbers of pending waiters to measure at, comma separated")
	fs.IntVar(&cfg.batch, "batch", 500, "jobs completed per transaction")
	fs.IntVar(&cfg.samples, "samples", 200, "latency samples per series")
	fs.IntVar(&cfg.floorSamples, "floor-samples", 500, "samples of each raw floor measurement")
	fs.DurationVar(&cfg.pollInterval, "poll-interval", 100*time.Millisecond, "the polling baseline's interval between two reads of a job")
	fs.DurationVar(&cfg.baselineTimeout, "baseline-timeout", 45*time.Second, "cap on each polling-baseline run (it overwhelms a small machine at large sizes)")
	fs.IntVar(&cfg.finished, "finished", 100_000, "jobs for the WaitAll-over-finished-jobs measurement")
	fs.IntVar(&cfg.pool, "pool", 4, "connections in the measured pool (watcher reads, baseline polls)")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON document instead of tables")
	fs.StringVar(&cfg.svg, "svg", "", "also draw a chart into this SVG file")
	fs.BoolVar(&cfg.quick, "quick", false, "a small, fast run: sizes 100,1000, few samples (flags given explicitly still win)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./bench [flags]")
		fmt.Fprintln(stderr, "\nMeasures latency, database cost, throughput and memory of jobwatch on a real PostgreSQL,")
		fmt.Fprintln(stderr, "with and without the backend's change feed, next to a loop polling each job's status.")
		fmt.Fprintln(stderr, "Progress goes to standard error. Flags:")
		fs.PrintDefaults()
	}
	if err := parseArgsOnly(fs, args); err != nil {
		return exitUsage, err
	}
	if cfg.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"sizes":            func() { cfg.sizes = []int{100, 1000} },
			"batch":            func() { cfg.batch = 100 },
			"samples":          func() { cfg.samples = 20 },
			"floor-samples":    func() { cfg.floorSamples = 50 },
			"baseline-timeout": func() { cfg.baselineTimeout = 10 * time.Second },
			"finished":         func() { cfg.finished = 1000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	switch {
	case cfg.batch < 1 || cfg.batch > 10_000:
		return exitUsage, fmt.Errorf("%w: --batch must be between 1 and 10000", errUsage)
	case cfg.samples < 1 || cfg.samples > 100_000:
		return exitUsage, fmt.Errorf("%w: --samples must be between 1 and 100000", errUsage)
	case cfg.floorSamples < 1 || cfg.floorSamples > 100_000:
		return exitUsage, fmt.Errorf("%w: --floor-samples must be between 1 and 100000", errUsage)
	case cfg.pollInterval <= 0:
		return exitUsage, fmt.Errorf("%w: --poll-interval must be positive", errUsage)
	case cfg.baselineTimeout <= 0:
		return exitUsage, fmt.Errorf("%w: --baseline-timeout must be positive", errUsage)
	case cfg.finished < 1 || cfg.finished > 1_000_000:
		return exitUsage, fmt.Errorf("%w: --finished must be between 1 and 1000000", errUsage)
	case cfg.pool < 2 || cfg.pool > 100:
		return exitUsage, fmt.Errorf("%w: --pool must be between 2 and 100", errUsage)
	case len(cfg.sizes) == 0:
		return exitUsage, fmt.Errorf("%w: --sizes must name at least one size", errUsage)
	}
	if cfg.svg != "" {
		// Fail before a long run, not after it.
		if fi, err := os.Stat(filepath.Dir(cfg.svg)); err != nil || !fi.IsDir() {
			return exitUsage, fmt.Errorf("%w: --svg: no directory %q to write into", errUsage, filepath.Dir(cfg.svg))
		}
	}

	var tag [4]byte
	_, _ = rand.Read(tag[:])
	cfg.conn.prefix = "jobwatch_bench_" + hex.EncodeToString(tag[:]) + "_"

	b := &bench{cfg: cfg, stderr: stderr, started: time.Now()}
	rep, err := b.open(ctx)
	if err != nil {
		return exitFor(err), err
	}
	if cfg.svg != "" {
		if err := writeChartFile(cfg.svg, rep); err != nil {
			return exitDB, fmt.Errorf("--svg: %w", err)
		}
		b.logf("chart written to %s", cfg.svg)
	}
	if cfg.json {
		if err := rep.writeJSON(stdout); err != nil {
			return exitOutput, &outputError{err}
		}
	} else {
		rep.writeText(stdout)
	}
	return exitOK, nil
}

// bench is one run.
type bench struct {
	cfg     benchConfig
	stderr  io.Writer
	started time.Time

	m       benchDB    // measured side: watchers, baseline polls, floor
	mq      benchQueue // m's backend
	workers queue      // enqueues and completes jobs, on its own pool
	pollSQL string

	// finishedIDs are jobs some scale run finished, kept for WaitAll.
	finishedIDs []jobwatch.JobID
	// noCheckpoint: the server refused CHECKPOINT once; do not say so again.
	noCheckpoint bool
}

// open connects both pools, installs the queue under the bench's prefix,
// runs every measurement and drops the queue again, whatever happens
// (errors, Ctrl-C).
func (b *bench) open(ctx context.Context) (*benchReport, error) {
	m, err := openBenchDB(ctx, b.cfg.conn, b.cfg.pool)
	if err != nil {
		return nil, b.cfg.conn.redact(err)
	}
	defer m.close()
	workers, closeWorkers, err := b.cfg.conn.open(ctx)
	if err != nil {
		return nil, err
	}
	defer closeWorkers()
	b.m, b.mq, b.workers = m, m.queue(), workers
	b.pollSQL = "SELECT status FROM " + b.mq.LogTable() + " WHERE job_id = $1 ORDER BY created DESC, id DESC LIMIT 1"

	b.logf("installing the queue under prefix %q", b.cfg.conn.prefix)
	if _, err := b.mq.Install(ctx); err != nil {
		return nil, b.fail(ctx, err)
	}
	defer func() {
		if ctx.Err() != nil {
			b.logf("interrupted: cleaning up")
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.mq.Uninstall(cctx); err != nil {
			b.logf("cleanup: could not drop the queue under prefix %q: %v", b.cfg.conn.prefix, b.cfg.conn.redact(err))
			return
		}
		b.logf("dropped the queue under prefix %q", b.cfg.conn.prefix)
	}()

	rep, err := b.run(ctx)
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	return rep, nil
}

// fail classifies err: an interruption stays a context error (exit 130),
// bad usage stays usage, anything else is the database's (exit 5).
func (b *bench) fail(ctx context.Context, err error) error {
	var db *dbError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", context.Canceled)
	case errors.Is(err, errUsage), errors.As(err, &db):
		return b.cfg.conn.redact(err)
	}
	return b.cfg.conn.redact(&dbError{err})
}

// logf prints a progress line on standard error.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// run measures everything, in order.
func (b *bench) run(ctx context.Context) (*benchReport, error) {
	rep := &benchReport{
		Config: benchParams{
			Driver:            b.cfg.conn.driver,
			Prefix:            b.cfg.conn.prefix,
			Quick:             b.cfg.quick,
			Sizes:             b.cfg.sizes,
			BatchSize:         b.cfg.batch,
			Samples:           b.cfg.samples,
			FloorSamples:      b.cfg.floorSamples,
			PollIntervalMS:    ms(b.cfg.pollInterval),
			BaselineTimeoutS:  b.cfg.baselineTimeout.Seconds(),
			Finished:          b.cfg.finished,
			PoolSize:          b.cfg.pool,
			DefaultDebounceMS: ms(jobwatch.DefaultDebounce),
			RefreshS:          jobwatch.DefaultRefreshInterval.Seconds(),
		},
	}
	var err error
	if rep.Machine, err = b.machine(ctx); err != nil {
		return nil, err
	}
	_, hasFeed := b.mq.(jobwatch.ChangeFeed)
	rep.ChangeFeed = feedInfo{Backend: hasFeed}
	if hasFeed {
		rep.ChangeFeed.Note = fmt.Sprintf("the %s backend implements jobwatch.ChangeFeed; %q is the default configuration, which uses it above %d pending jobs "+
			"(so not in the one-waiter latency runs), %q is jobwatch.WithChangeFeed(false), %q is jobwatch.WithFeedThreshold(0)",
			b.cfg.conn.driver, seriesFeed, jobwatch.DefaultFeedThreshold, seriesNoFeed, seriesFeedForced)
	} else {
		rep.ChangeFeed.Note = fmt.Sprintf("the %s backend does NOT implement jobwatch.ChangeFeed: %q behaves as %q",
			b.cfg.conn.driver, seriesFeed, seriesNoFeed)
	}
	b.logf("%s", rep.ChangeFeed.Note)

	if rep.Floor, err = b.floor(ctx); err != nil {
		return nil, err
	}
	if rep.Latency, err = b.latency(ctx); err != nil {
		return nil, err
	}
	for _, n := range b.cfg.sizes {
		rows, mem, err := b.scale(ctx, n)
		if err != nil {
			return nil, err
		}
		rep.Scale = append(rep.Scale, rows...)
		rep.Memory = append(rep.Memory, mem...)
	}
	if rep.WaitAll, err = b.waitAllFinished(ctx); err != nil {
		return nil, err
	}
	rep.Bar = evaluateBar(rep)
	rep.Notes = []string{
		"database time is measured client-side: the summed wall time of the driver's FetchStatuses and Changes calls " +
			"(a wrapper around the Driver that keeps its ChangeFeed visible); for the baseline, the summed wall time of its poll " +
			"queries, after a pool connection was acquired. On a loaded 2-core machine it includes time spent waiting for CPU.",
		"scale rows count only the completion phase: each series first registers its N waits (jobwatch: until the initial read " +
			"of every id is done; baseline: until every poller has read once), then jobs complete on a separate pool.",
		"latency runs from the committing call's return to Wait's (scale rows: each batch's commit to each of its jobs); " +
			"a sample where Wait returned first counts as 0, since the server notifies listeners as it answers the commit.",
		fmt.Sprintf("jobwatch uses its defaults unless stated (debounce %s, refresh %s, batch %d ids per read); the baseline polls every %s through the measured pool of %d connections.",
			jobwatch.DefaultDebounce, jobwatch.DefaultRefreshInterval, jobwatch.DefaultBatchSize, b.cfg.pollInterval, b.cfg.pool),
	}
	rep.ElapsedS = time.Since(b.started).Seconds()
	return rep, nil
}
