package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jobwatch/jobwatch"
)

// report is one run's results: what the Markdown, the JSON and the chart
// are made from.
type report struct {
	Command    string      `json:"command"`
	Started    time.Time   `json:"started"`
	ElapsedS   float64     `json:"elapsed_s"`
	EstimatedS float64     `json:"estimated_s"`
	Machine    machineInfo `json:"machine"`
	LoadAvgEnd string      `json:"load_avg_end,omitempty"`
	Server     serverInfo  `json:"server"`
	Params     params      `json:"params"`
	Floor      *floorRow   `json:"floor,omitempty"`
	Debounce0  []d0Row     `json:"debounce0,omitempty"`
	Scale      []scaleRow  `json:"scale,omitempty"`
	Idle       []idleRow   `json:"idle,omitempty"`
	Derived    derived     `json:"derived"`
	Warnings   []string    `json:"warnings,omitempty"`
}

// params are the run's settings, as used.
type params struct {
	Driver            string     `json:"driver"`
	Quick             bool       `json:"quick"`
	Sizes             []int      `json:"sizes"`
	Series            []seriesID `json:"series"`
	SpreadS           float64    `json:"spread_s"`
	IntervalMS        float64    `json:"interval_ms"`
	Batch             int        `json:"batch"`
	Pool              int        `json:"pool"`
	IdleS             float64    `json:"idle_s"`
	IdleJobs          int        `json:"idle_jobs"`
	Samples           int        `json:"samples"`
	FloorSamples      int        `json:"floor_samples"`
	PollIntervalMS    float64    `json:"poll_interval_ms"`
	DrainS            float64    `json:"drain_s"`
	DefaultDebounceMS float64    `json:"default_debounce_ms"`
	RefreshS          float64    `json:"refresh_s"`
	FullReadS         float64    `json:"full_read_s"`
}

// perJob is a cost divided by the jobs it resolved.
type perJob struct {
	DBMS       float64 `json:"db_ms"`
	PlanMS     float64 `json:"plan_ms"`
	Statements float64 `json:"statements"`
	Rows       float64 `json:"rows"`
	Buffers    float64 `json:"buffers"`
}

func divide(c cost, n int) perJob {
	if n == 0 {
		return perJob{}
	}
	f := float64(n)
	return perJob{DBMS: c.ExecMS / f, PlanMS: c.PlanMS / f, Statements: float64(c.Statements) / f, Rows: float64(c.Rows) / f, Buffers: float64(c.Buffers) / f}
}

// scaleRow is one series waiting on W jobs while they complete.
type scaleRow struct {
	W      int      `json:"w"`
	Series seriesID `json:"series"`
	Label  string   `json:"label"`

	Transactions int     `json:"transactions"`
	LargestBatch int     `json:"largest_batch"`
	IntervalMS   float64 `json:"interval_ms"`
	// CompletionS is from the first commit to the last, as it happened.
	CompletionS  float64 `json:"completion_s"`
	OfferedPerS  float64 `json:"offered_per_s"`
	ResolvedPerS float64 `json:"resolved_per_s"`

	Resolved   int `json:"resolved"`
	Unresolved int `json:"unresolved"` // still pending at the drain's end
	Errors     int `json:"errors"`     // waits that ended with an error

	// Latency runs from each job's commit to its wait returning, over
	// every job; an unresolved job counts as the drain's end.
	Latency dist `json:"latency"`

	StartupS    float64 `json:"startup_s"`
	StartupCost cost    `json:"startup_cost"` // New to the start-up reads' end
	Cost        cost    `json:"cost"`         // New to the last resolution, start-up included
	PerJob      perJob  `json:"per_job"`      // Cost / W
	Evicted     bool    `json:"evicted,omitempty"`

	MemoryPerWaiterB float64    `json:"memory_per_waiter_b"`
	Watcher          *statsJSON `json:"watcher,omitempty"`
}

// idleRow is one series waiting on jobs that do not change.
type idleRow struct {
	W           int      `json:"w"`
	Series      seriesID `json:"series"`
	Label       string   `json:"label"`
	IdleS       float64  `json:"idle_s"`
	StartupS    float64  `json:"startup_s"`
	StartupCost cost     `json:"startup_cost"`
	IdleCost    cost     `json:"idle_cost"` // the idle phase alone, after start-up
	CorePct     float64  `json:"core_pct"`  // IdleCost's DB time, % of one core over the idle phase
	// CorePctWithStartup counts start-up too, over start-up plus the
	// idle phase: the end-to-end figure.
	CorePctWithStartup float64    `json:"core_pct_with_startup"`
	Resolved           int        `json:"resolved"` // should be 0: nothing changed
	Evicted            bool       `json:"evicted,omitempty"`
	Watcher            *statsJSON `json:"watcher,omitempty"`
}

// floorRow is the raw floor of latency.
type floorRow struct {
	NotifyRoundTrip dist    `json:"notify_round_trip"`
	StatusRead      dist    `json:"status_read"`
	FloorMS         float64 `json:"floor_ms"` // sum of the two medians
}

// d0Row is the latency of one wait at a time with debounce 0.
type d0Row struct {
	Series  seriesID `json:"series"`
	Label   string   `json:"label"`
	Latency dist     `json:"latency"`
	// PerWait is the watcher's statements over the samples, per wait.
	PerWait perJob `json:"per_wait"`
}

// statsJSON is a Watcher's Stats as JSON, every field included (new
// counters too), LastError as its message.
type statsJSON struct {
	jobwatch.Stats
	LastError string `json:"LastError,omitempty"`
}

func newStatsJSON(s jobwatch.Stats) *statsJSON {
	j := &statsJSON{Stats: s}
	if s.LastError != nil {
		j.LastError = s.LastError.Error()
	}
	return j
}

// readReportFile reads a report written by writeJSON.
func readReportFile(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s is not a bench report: %w", path, err)
	}
	if r.Command == "" || r.Started.IsZero() {
		return nil, fmt.Errorf("%s is not a bench report: no command or start time", path)
	}
	return &r, nil
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
