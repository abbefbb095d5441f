package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// envReport names a bench report (JSON) for TestReportAgainstBar;
// scripts/bench-check sets it.
const envReport = "JOBWATCH_BENCH_REPORT"

// barVerdict is one bar's comparison with a run. This check, over a
// report and bench/bars.json, is the only place a verdict is made: the
// bench itself only measures.
type barVerdict struct {
	bar        bar
	value      float64
	measured   bool
	within     bool   // the value is within the bound
	meets      bool   // within, and measured as the bar says
	comparable string // why the run is not the bar's, if it is not
}

func (v barVerdict) String() string {
	m := fmtRatio(v.bar.Metric, v.value)
	switch {
	case !v.measured:
		return fmt.Sprintf("NOT MEASURED    %s", v.bar.Text)
	case v.comparable != "":
		return fmt.Sprintf("NOT COMPARABLE  %s: measured %s, %s bound, but %s", v.bar.Text, m, map[bool]string{true: "within the", false: "outside the"}[v.within], v.comparable)
	case !v.meets:
		return fmt.Sprintf("SHORT           %s: measured %s", v.bar.Text, m)
	}
	return fmt.Sprintf("MEETS           %s: measured %s", v.bar.Text, m)
}

// checkBars compares r with each bar. A bar measured at sizes other than
// its own, or by a quick run, does not count as met.
func checkBars(r *report, f *barFile) []barVerdict {
	var out []barVerdict
	for _, b := range f.Bars {
		v := barVerdict{bar: b}
		v.value, v.measured = r.Derived.metric(b.Metric)
		if v.measured {
			switch {
			case b.AtMost != nil:
				v.within = v.value <= *b.AtMost
			case b.AtLeast != nil:
				v.within = v.value >= *b.AtLeast
			case b.Below != nil:
				v.within = v.value < *b.Below
			}
			v.comparable = r.notTheBars(b)
			v.meets = v.within && v.comparable == ""
		}
		out = append(out, v)
	}
	return out
}

// TestReportAgainstBar compares the report named by $JOBWATCH_BENCH_REPORT
// (scripts/bench-check sets it) with bench/bars.json, printing every bar,
// met or not. Without the variable it checks the committed report,
// docs/bench.json, so a report that falls short cannot be committed as
// the project's figures unnoticed.
func TestReportAgainstBar(t *testing.T) {
	path := os.Getenv(envReport)
	if path == "" {
		path = filepath.Join("..", "docs", "bench.json")
	}
	r := readReport(t, path)
	f, err := loadBars("bars.json", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s, %s", r.Command, r.Started.Format("2006-01-02 15:04 MST"))
	for _, v := range checkBars(r, f) {
		if v.measured && v.meets {
			t.Log(v)
		} else {
			t.Error(v)
		}
	}
}

func TestCheckBarsReportsShortfalls(t *testing.T) {
	f, err := loadBars("bars.json", false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]barVerdict{}
	for _, v := range checkBars(sampleReport(), f) {
		got[v.bar.Metric] = v
	}
	// The sample: p99 71 ms (over 60), growth 1.25x, no feed 18x,
	// idle 0.5 %, debounce 0 at 1.5x the floor.
	want := map[string]bool{
		"default_p99_max_ms":             false,
		"default_db_per_job_growth":      true,
		"nofeed_over_default_db_per_job": true,
		"idle_core_pct":                  true,
		"d0_median_over_floor":           true,
	}
	for metric, meets := range want {
		v, ok := got[metric]
		if !ok || !v.measured || v.meets != meets || v.within != meets || v.comparable != "" {
			t.Errorf("%s: %+v, want measured and meets=%v", metric, v, meets)
		}
	}
	// A quick run at other sizes meets nothing.
	r := sampleReport()
	r.Params.Quick = true
	for _, v := range checkBars(r, f) {
		if v.meets || v.comparable == "" {
			t.Errorf("a quick run met %q: %v", v.bar.Text, v)
		}
	}
	// A spread shorter than the bar's is not the bar's run either.
	r = sampleReport()
	r.Params.SpreadS = 10
	for _, v := range checkBars(r, f) {
		if v.bar.MinSpreadS > 0 && v.comparable == "" {
			t.Errorf("a 10 s spread was compared with %q", v.bar.Text)
		}
	}
	// A run without the other series does not measure their ratio.
	r = sampleReport()
	r.Derived.NoFeedOverDefault = nil
	for _, v := range checkBars(r, f) {
		if v.bar.Metric == "nofeed_over_default_db_per_job" && v.measured {
			t.Error("an absent ratio was measured")
		}
	}
}
