package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Series names, as the report and the chart label them.
const (
	seriesFeed       = "jobwatch (feed)"
	seriesNoFeed     = "jobwatch (no feed)"
	seriesFeedForced = "jobwatch (feed forced, threshold 0)"
	seriesBaseline   = "polling baseline"
)

// benchReport is everything one run measured: the --json document.
type benchReport struct {
	Machine    machineInfo  `json:"machine"`
	Config     benchParams  `json:"config"`
	ChangeFeed feedInfo     `json:"change_feed"`
	Floor      floorResult  `json:"floor"`
	Latency    []latencyRow `json:"latency"`
	Scale      []scaleRow   `json:"scale"`
	WaitAll    []waitAllRow `json:"wait_all_finished"`
	Memory     []memoryRow  `json:"memory"`
	Bar        []barCheck   `json:"bar"`
	Notes      []string     `json:"notes"`
	ElapsedS   float64      `json:"elapsed_s"`
}

type machineInfo struct {
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	Go          string `json:"go"`
	PostgreSQL  string `json:"postgresql"`
}

type benchParams struct {
	Driver            string  `json:"driver"`
	Prefix            string  `json:"prefix"`
	Quick             bool    `json:"quick"`
	Sizes             []int   `json:"sizes"`
	BatchSize         int     `json:"batch_size"`
	Samples           int     `json:"latency_samples"`
	FloorSamples      int     `json:"floor_samples"`
	PollIntervalMS    float64 `json:"poll_interval_ms"`
	BaselineTimeoutS  float64 `json:"baseline_timeout_s"`
	Finished          int     `json:"finished_jobs"`
	PoolSize          int     `json:"pool_size"`
	DefaultDebounceMS float64 `json:"default_debounce_ms"`
	RefreshS          float64 `json:"refresh_interval_s"`
}

type feedInfo struct {
	// Backend says whether the backend implements jobwatch.ChangeFeed.
	Backend bool   `json:"backend_implements"`
	Note    string `json:"note"`
}

type floorResult struct {
	NotifyRoundTrip dist `json:"notify_round_trip"`
	StatusRead      dist `json:"status_read"`
	// FloorMS is the sum of the two medians: one NOTIFY round trip plus one
	// indexed status read.
	FloorMS float64 `json:"floor_ms"`
}

type latencyRow struct {
	Series string `json:"series"`
	// DebounceMS is the watcher's debounce; for the baseline, its poll
	// interval.
	DebounceMS float64 `json:"debounce_ms"`
	Latency    dist    `json:"latency"`
	// ReadsPerSample is the driver's read calls (FetchStatuses, Changes)
	// between a commit and its wait returning, on average (jobwatch only),
	// and PartialChangeSets how many of those change sets were Partial.
	ReadsPerSample    float64 `json:"-"`
	PartialChangeSets uint64  `json:"partial_change_sets"`
	// DBMSPerSample is the database time of those reads, per wait.
	DBMSPerSample float64 `json:"-"`
}

// MarshalJSON writes ReadsPerSample, leaving it out where it means nothing
// (the baseline: NaN, which JSON cannot hold).
func (l latencyRow) MarshalJSON() ([]byte, error) {
	type plain latencyRow
	var reads, db *float64
	if !math.IsNaN(l.ReadsPerSample) {
		reads, db = &l.ReadsPerSample, &l.DBMSPerSample
	}
	return json.Marshal(struct {
		plain
		ReadsPerSample *float64 `json:"reads_per_sample,omitempty"`
		DBMSPerSample  *float64 `json:"db_ms_per_sample,omitempty"`
	}{plain(l), reads, db})
}

type scaleRow struct {
	Series         string  `json:"series"`
	Waiters        int     `json:"waiters"`
	Resolved       int     `json:"resolved"`
	Capped         bool    `json:"capped"`
	Seconds        float64 `json:"seconds"`
	ResolvedPerSec float64 `json:"resolved_per_s"`
	// Reads are status reads issued while the jobs completed: FetchStatuses
	// plus Changes calls (Watcher.Stats().Reads.Total()); for the
	// baseline, its poll queries.
	Reads         uint64  `json:"reads"`
	IDsRead       uint64  `json:"ids_read"`
	ChangesRead   uint64  `json:"changes_read"`
	Notifications uint64  `json:"notifications"`
	DBCalls       uint64  `json:"db_calls"`
	DBMS          float64 `json:"db_ms"`
	DBUSPerJob    float64 `json:"db_us_per_resolved_job"`
	Errors        uint64  `json:"errors"`
	// Latency is from each batch's commit to each of its jobs' wait
	// returning, under this load.
	Latency dist `json:"latency"`
	// SetupReads and SetupIDsRead are what the watcher read while the waits
	// were registered and settled, before the timed phase (jobwatch only).
	SetupReads uint64 `json:"setup_reads"`
	// PartialFeeds counts change-feed reads that came back Partial during
	// the timed phase (each makes the watcher re-read every pending job).
	PartialFeeds uint64 `json:"partial_change_sets"`
	SetupIDsRead uint64 `json:"setup_ids_read"`
}

type waitAllRow struct {
	Series   string  `json:"series"`
	Jobs     int     `json:"jobs"`
	Resolved int     `json:"resolved"`
	Capped   bool    `json:"capped"`
	Seconds  float64 `json:"seconds"`
	// SecondsAll lists every run's time, for jobwatch (which reports its
	// median run); the baseline runs once.
	SecondsAll []float64 `json:"seconds_all_runs,omitempty"`
	Reads      uint64    `json:"reads"`
	IDsRead    uint64    `json:"ids_read"`
	DBMS       float64   `json:"db_ms"`
}

type memoryRow struct {
	Series  string `json:"series"`
	Waiters int    `json:"waiters"`
	// HeapBytesPerWaiter is the live heap's growth, after GC, with the
	// waits pending, over the number of waits; StackBytesPerWaiter the
	// same for goroutine stacks; BytesPerWaiter their sum.
	HeapBytesPerWaiter  float64 `json:"heap_bytes_per_waiter"`
	StackBytesPerWaiter float64 `json:"stack_bytes_per_waiter"`
	BytesPerWaiter      float64 `json:"bytes_per_waiter"`
	Capped              bool    `json:"capped"`
}

type barCheck struct {
	Criterion string `json:"criterion"`
	Target    string `json:"target"`
	Measured  string `json:"measured"`
	Met       bool   `json:"met"`
	// Evaluated is false when this run did not measure what the criterion
	// needs (for example --sizes without 1k or 100k).
	Evaluated bool `json:"evaluated"`
}

func (r *benchReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText prints the report as readable tables.
func (r *benchReport) writeText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "jobwatch bench: driver %s, %s\n", r.Config.Driver, m.PostgreSQL)
	fmt.Fprintf(w, "machine: %d CPUs%s, %s memory, %s %s/%s\n", m.CPUs, parenIf(m.CPUModel), humanBytes(m.MemoryBytes), m.Go, m.OS, m.Arch)
	fmt.Fprintf(w, "change feed: %s\n", r.ChangeFeed.Note)

	fmt.Fprintf(w, "\nRaw floor, measured in this run (%d samples each)\n", r.Floor.NotifyRoundTrip.N)
	t := table{left: 1, header: []string{"", "p50 ms", "p90 ms", "p99 ms", "max ms"}}
	t.add(distCells("NOTIFY round trip (pg_notify -> dedicated LISTEN connection)", r.Floor.NotifyRoundTrip)...)
	t.add(distCells("indexed status read (FetchStatuses of 1 id)", r.Floor.StatusRead)...)
	t.add("floor = sum of the two medians", fmtMS(r.Floor.FloorMS), "", "", "")
	t.write(w)

	fmt.Fprintf(w, "\nLatency: commit of a terminal transition -> Wait returns (one waiter at a time)\n")
	t = table{left: 2, header: []string{"series", "debounce", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "reads/wait", "db ms/wait"}}
	for _, l := range r.Latency {
		deb := fmt.Sprintf("%g ms", l.DebounceMS)
		if l.Series == seriesBaseline {
			deb = fmt.Sprintf("polls every %g ms", l.DebounceMS)
		}
		reads, db := "-", "-"
		if !math.IsNaN(l.ReadsPerSample) {
			reads, db = fmt.Sprintf("%.2f", l.ReadsPerSample), fmtMS(l.DBMSPerSample)
		}
		t.add(append(append([]string{l.Series, deb, fmt.Sprint(l.Latency.N)}, distCells("", l.Latency)[1:]...), reads, db)...)
	}
	t.write(w)

	fmt.Fprintf(w, "\nScale: N pending waiters; jobs complete %d per transaction, one transaction after the other\n", r.Config.BatchSize)
	fmt.Fprintf(w, "(jobwatch defaults: debounce %g ms, refresh %g s; reads, ids, changes and db time count the completion phase only)\n",
		r.Config.DefaultDebounceMS, r.Config.RefreshS)
	t = table{left: 2, header: []string{"waiters", "series", "resolved", "resolved/s", "reads", "ids read", "changes read", "db ms", "db us/job", "p50 ms", "p99 ms"}}
	for _, s := range r.Scale {
		res := fmt.Sprint(s.Resolved)
		if s.Capped {
			res += " (capped)"
		}
		t.add(fmt.Sprint(s.Waiters), s.Series, res, fmtNum(s.ResolvedPerSec), fmt.Sprint(s.Reads), fmt.Sprint(s.IDsRead),
			fmt.Sprint(s.ChangesRead), fmtMS(s.DBMS), fmtNum(s.DBUSPerJob), fmtMS(s.Latency.P50), fmtMS(s.Latency.P99))
	}
	t.write(w)

	fmt.Fprintf(w, "\nWaitAll over jobs that have all finished already (fresh watcher, default options; jobwatch: median of its runs)\n")
	t = table{left: 1, header: []string{"series", "jobs", "resolved", "seconds", "reads", "ids read", "db ms", "all runs, s"}}
	for _, a := range r.WaitAll {
		res := fmt.Sprint(a.Resolved)
		if a.Capped {
			res += " (capped)"
		}
		var all []string
		for _, x := range a.SecondsAll {
			all = append(all, fmt.Sprintf("%.3f", x))
		}
		t.add(a.Series, fmt.Sprint(a.Jobs), res, fmt.Sprintf("%.3f", a.Seconds), fmt.Sprint(a.Reads), fmt.Sprint(a.IDsRead), fmtMS(a.DBMS), strings.Join(all, " "))
	}
	t.write(w)

	fmt.Fprintf(w, "\nMemory per pending waiter (growth of live heap and goroutine stacks after GC, with N waits pending, / N)\n")
	t = table{left: 2, header: []string{"waiters", "series", "heap B", "stack B", "total B"}}
	for _, mr := range r.Memory {
		name := mr.Series
		if mr.Capped {
			name += " (capped)"
		}
		t.add(fmt.Sprint(mr.Waiters), name, fmt.Sprintf("%.0f", mr.HeapBytesPerWaiter),
			fmt.Sprintf("%.0f", mr.StackBytesPerWaiter), fmt.Sprintf("%.0f", mr.BytesPerWaiter))
	}
	t.write(w)

	fmt.Fprintf(w, "\nThe bar (design.md section 7)\n")
	for _, b := range r.Bar {
		verdict := "MEETS"
		switch {
		case !b.Evaluated:
			verdict = "N/A  "
		case !b.Met:
			verdict = "FAILS"
		}
		fmt.Fprintf(w, "  [%s] %s: %s (target %s)\n", verdict, b.Criterion, b.Measured, b.Target)
	}
	fmt.Fprintln(w)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "total bench time %.1fs\n", r.ElapsedS)
}

// table prints rows with their first left columns aligned left and the
// others (numbers) aligned right, indented by two spaces.
type table struct {
	left   int
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	all := append([][]string{t.header}, t.rows...)
	width := make([]int, len(t.header))
	for _, row := range all {
		for i, c := range row {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	for _, row := range all {
		var b strings.Builder
		b.WriteString(" ")
		for i, c := range row {
			if i >= len(width) {
				break
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			b.WriteString(" ")
			if i < t.left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func distCells(name string, d dist) []string {
	return []string{name, fmtMS(d.P50), fmtMS(d.P90), fmtMS(d.P99), fmtMS(d.Max)}
}

// fmtMS prints milliseconds with three significant digits at least.
func fmtMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 100:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtNum prints a rate or per-job figure readably.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 1000:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func humanBytes(b uint64) string {
	if b == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

func parenIf(s string) string {
	if s == "" {
		return ""
	}
	return " (" + strings.TrimSpace(s) + ")"
}
