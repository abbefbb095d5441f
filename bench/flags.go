package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config holds the bench's flags.
type config struct {
	dsn, driver, pgBin string
	sizes              []int
	series             []seriesID
	spread, interval   time.Duration
	batch, pool        int
	idle               time.Duration
	idleJobs           int
	samples            int
	floorSamples       int
	pollInterval       time.Duration
	drain              time.Duration
	jsonOut, doc       string
	chart, bars        string
	from               string // a report to render instead of measuring
	quick              bool
	args               []string // as given, for the report
}

// seriesID names one way of waiting.
type seriesID string

const (
	seriesDefault seriesID = "default" // jobwatch with its defaults
	seriesNoFeed  seriesID = "nofeed"  // jobwatch.WithChangeFeed(false): PgQueuer's method
	seriesPolling seriesID = "polling" // a loop per job polling its status
)

var allSeries = []seriesID{seriesDefault, seriesNoFeed, seriesPolling}

// label is the series' name in the report.
func (s seriesID) label() string {
	switch s {
	case seriesDefault:
		return "jobwatch (defaults)"
	case seriesNoFeed:
		return "WithChangeFeed(false)"
	case seriesPolling:
		return "polling loop"
	}
	return string(s)
}

// intList parses a comma-separated list of counts in [1, max].
type intList struct {
	v   *[]int
	max int
}

func (l intList) String() string {
	if l.v == nil {
		return ""
	}
	parts := make([]string, len(*l.v))
	for i, n := range *l.v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (l intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > l.max {
			return fmt.Errorf("%q is not a count between 1 and %d", f, l.max)
		}
		out = append(out, n)
	}
	*l.v = out
	return nil
}

// seriesList parses a comma-separated list of series.
type seriesList struct{ v *[]seriesID }

func (l seriesList) String() string {
	if l.v == nil {
		return ""
	}
	parts := make([]string, len(*l.v))
	for i, s := range *l.v {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

func (l seriesList) Set(v string) error {
	var out []seriesID
	for _, f := range strings.Split(v, ",") {
		s := seriesID(strings.TrimSpace(f))
		if s != seriesDefault && s != seriesNoFeed && s != seriesPolling {
			return fmt.Errorf("%q is not a series (default, nofeed or polling)", f)
		}
		out = append(out, s)
	}
	*l.v = out
	return nil
}

// quickValues are the --quick mode's values of the flags not given.
var quickValues = map[string]string{
	"sizes":         "100,1000",
	"spread":        "1s",
	"idle":          "2s",
	"idle-jobs":     "1000",
	"samples":       "20",
	"floor-samples": "50",
	"drain":         "30s",
}

// parseConfig parses and checks the flags. Bad input is a usage error.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{sizes: []int{1000, 10_000, 100_000}, series: allSeries, args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.dsn, "dsn", "", "measure on this server (it must preload pg_stat_statements; the bench creates a schema and two roles there and drops them). "+
		"Default: a private server the bench starts (initdb into a temporary directory) and removes")
	fs.StringVar(&cfg.pgBin, "pg-bin", "", "directory of initdb, pg_ctl and postgres for the private server (default $JOBWATCH_PG_BINDIR, pg_config --bindir, /usr/lib/postgresql/*/bin)")
	fs.StringVar(&cfg.driver, "driver", "pgx", "the watcher's database driver: pgx or pq")
	fs.Var(intList{&cfg.sizes, 1_000_000}, "sizes", "numbers of jobs waited on (W), comma separated")
	fs.Var(seriesList{&cfg.series}, "series", "series to run, comma separated: default, nofeed, polling")
	fs.DurationVar(&cfg.spread, "spread", 30*time.Second, "completions of each run are spread over this long (0: --batch jobs every --interval)")
	fs.DurationVar(&cfg.interval, "interval", 10*time.Millisecond, "least time between two completing transactions")
	fs.IntVar(&cfg.batch, "batch", 100, "most jobs completed per transaction")
	fs.IntVar(&cfg.pool, "pool", 4, "connections in the watcher's pool (pgx's default on this machine is 4)")
	fs.DurationVar(&cfg.idle, "idle", time.Minute, "length of the idle phase: jobs pending, nothing changing (0: skip it)")
	fs.IntVar(&cfg.idleJobs, "idle-jobs", 100_000, "jobs pending in the idle phase")
	fs.IntVar(&cfg.samples, "samples", 200, "debounce-0 latency samples per series")
	fs.IntVar(&cfg.floorSamples, "floor-samples", 500, "samples of each floor measurement")
	fs.DurationVar(&cfg.pollInterval, "poll-interval", 100*time.Millisecond, "the polling loop's interval between two reads of a job")
	fs.DurationVar(&cfg.drain, "drain", 2*time.Minute, "after the last commit, how long the waits may take to return before the run counts them unresolved")
	fs.StringVar(&cfg.jsonOut, "json", "", "also write the report as JSON to this file (- for standard output, instead of the Markdown)")
	fs.StringVar(&cfg.doc, "doc", "", "rewrite the generated part of this Markdown file (docs/PERFORMANCE.md) with the report")
	fs.StringVar(&cfg.chart, "chart", "", "draw the chart into this SVG file")
	fs.StringVar(&cfg.bars, "bars", "bench/bars.json", "the issue's bar, shown next to the measured figures (a missing file is skipped)")
	fs.StringVar(&cfg.from, "from", "", "measure nothing: render the report in this JSON file (from --json) into --doc, --chart and standard output")
	fs.BoolVar(&cfg.quick, "quick", false, "a smoke test of seconds: "+quickSummary()+" (flags given explicitly win)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./bench [flags]")
		fmt.Fprintln(stderr, "\nMeasures jobwatch end to end on PostgreSQL: every statement of the watcher's own role, counted by")
		fmt.Fprintln(stderr, "pg_stat_statements from New to the last resolution, while a separate process finishes the jobs;")
		fmt.Fprintln(stderr, "side by side with WithChangeFeed(false) and a polling loop. Markdown on standard output, progress")
		fmt.Fprintln(stderr, "on standard error. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if cfg.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quickValues {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func quickSummary() string {
	return "sizes " + quickValues["sizes"] + ", spread " + quickValues["spread"] + ", idle " + quickValues["idle"] +
		" at " + quickValues["idle-jobs"] + " jobs, " + quickValues["samples"] + " samples"
}

func (c *config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
	}
	switch {
	case c.driver != "pgx" && c.driver != "pq":
		return bad("--driver must be pgx or pq, not %q", c.driver)
	case c.spread < 0 || c.spread > time.Hour:
		return bad("--spread must be between 0 and 1h")
	case c.interval <= 0 || c.interval > time.Minute:
		return bad("--interval must be positive and at most 1m")
	case c.batch < 1 || c.batch > 10_000:
		return bad("--batch must be between 1 and 10000")
	case c.pool < 2 || c.pool > 100:
		return bad("--pool must be between 2 and 100")
	case c.idle < 0 || c.idle > time.Hour:
		return bad("--idle must be between 0 and 1h")
	case c.idleJobs < 1 || c.idleJobs > 1_000_000:
		return bad("--idle-jobs must be between 1 and 1000000")
	case c.samples < 1 || c.samples > 100_000:
		return bad("--samples must be between 1 and 100000")
	case c.floorSamples < 1 || c.floorSamples > 100_000:
		return bad("--floor-samples must be between 1 and 100000")
	case c.pollInterval <= 0:
		return bad("--poll-interval must be positive")
	case c.drain <= 0:
		return bad("--drain must be positive")
	case len(c.sizes) == 0 || len(c.series) == 0:
		return bad("--sizes and --series must name at least one")
	}
	for _, out := range []struct{ flag, path string }{{"--json", c.jsonOut}, {"--doc", c.doc}, {"--chart", c.chart}} {
		if out.path == "" || out.path == "-" {
			continue
		}
		// Fail before a long run, not after it.
		if fi, err := os.Stat(filepath.Dir(out.path)); err != nil || !fi.IsDir() {
			return bad("%s: no directory %q to write into", out.flag, filepath.Dir(out.path))
		}
	}
	if c.from != "" {
		if _, err := os.Stat(c.from); err != nil {
			return bad("--from: %v", err)
		}
	}
	if c.doc != "" {
		if err := checkDoc(c.doc); err != nil {
			return bad("--doc %s: %v", c.doc, err)
		}
	}
	return nil
}

// has reports whether series s is to run.
func (c *config) has(s seriesID) bool {
	for _, x := range c.series {
		if x == s {
			return true
		}
	}
	return false
}
