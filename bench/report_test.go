package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
)

// sampleReport is a full run's report with made-up figures.
func sampleReport() *report {
	r := &report{
		Command: "go run ./bench", Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), ElapsedS: 600, EstimatedS: 650,
		Machine: machineInfo{OS: "linux", Arch: "amd64", CPUs: 2, Go: "go1.26"},
		Server:  serverInfo{Private: true, Version: "PostgreSQL 15.20 (Debian)", Settings: map[string]string{"server_version": "15.20"}},
		Params:  params{Driver: "pgx", Sizes: []int{1000, 10000, 100000}, Series: allSeries, SpreadS: 30, IdleS: 60},
		Floor:   &floorRow{NotifyRoundTrip: dist{N: 10, P50: 0.1}, StatusRead: dist{N: 10, P50: 0.2}, FloorMS: 0.3},
		Debounce0: []d0Row{
			{Series: seriesDefault, Label: seriesDefault.label(), Latency: dist{N: 10, P50: 0.45}},
			{Series: seriesNoFeed, Label: seriesNoFeed.label(), Latency: dist{N: 10, P50: 0.4}},
		},
	}
	perJobMS := map[seriesID][]float64{seriesDefault: {0.004, 0.0042, 0.005}, seriesNoFeed: {0.005, 0.02, 0.09}, seriesPolling: {0.3, 0.4, 0.5}}
	p99 := map[seriesID][]float64{seriesDefault: {55, 57, 71}, seriesNoFeed: {60, 80, 400}, seriesPolling: {150, 200, 2000}}
	for i, w := range r.Params.Sizes {
		for _, s := range allSeries {
			r.Scale = append(r.Scale, scaleRow{W: w, Series: s, Label: s.label(), Resolved: w,
				Latency: dist{N: w, P50: p99[s][i] / 2, P99: p99[s][i]},
				Cost:    cost{Statements: 10, ExecMS: perJobMS[s][i] * float64(w), ByStatement: []stmtCost{{Query: "SELECT a | b", Statements: 10}}},
				PerJob:  perJob{DBMS: perJobMS[s][i]}})
		}
	}
	for _, s := range allSeries {
		r.Idle = append(r.Idle, idleRow{W: 100000, Series: s, Label: s.label(), IdleS: 60, CorePct: 0.5, CorePctWithStartup: 1.2})
	}
	r.Derived = derive(r)
	return r
}

func TestDerive(t *testing.T) {
	d := sampleReport().Derived
	tests := []struct {
		name string
		got  *float64
		want float64
	}{
		{"default_p99_max_ms", d.DefaultP99MaxMS, 71},
		{"default_db_per_job_growth", d.DefaultDBPerJobGrowth, 0.005 / 0.004},
		{"nofeed_over_default_db_per_job", d.NoFeedOverDefault, 0.09 / 0.005},
		{"polling_over_default_db_per_job", d.PollingOverDefault, 0.5 / 0.005},
		{"idle_core_pct", d.IdleCorePct, 0.5},
		{"idle_core_pct_with_startup", d.IdleCorePctWithStartup, 1.2},
		{"d0_median_over_floor", d.D0MedianOverFloor, 1.5},
	}
	for _, tt := range tests {
		if tt.got == nil || math.Abs(*tt.got-tt.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
		if v, ok := d.metric(tt.name); !ok || math.Abs(v-tt.want) > 1e-9 {
			t.Errorf("metric(%q) = %v, %v; want %v", tt.name, v, ok, tt.want)
		}
		if d.Details[tt.name] == "" {
			t.Errorf("%s has no detail", tt.name)
		}
	}
	// A run without the other series measures no ratio to them.
	r := sampleReport()
	var only []scaleRow
	for _, row := range r.Scale {
		if row.Series == seriesDefault {
			only = append(only, row)
		}
	}
	r.Scale, r.Idle, r.Floor = only, nil, nil
	d = derive(r)
	if d.NoFeedOverDefault != nil || d.PollingOverDefault != nil || d.IdleCorePct != nil || d.D0MedianOverFloor != nil {
		t.Errorf("ratios without their figures: %+v", d)
	}
	if _, ok := d.metric("nofeed_over_default_db_per_job"); ok {
		t.Error("metric present without its figures")
	}
}

// TestBarsFile checks that the shipped bar file parses and that each bar
// names a metric the bench computes.
func TestBarsFile(t *testing.T) {
	f, err := loadBars("bars.json", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Bars) != 5 {
		t.Errorf("%d bars, want the issue's 5", len(f.Bars))
	}
	d := sampleReport().Derived
	for _, b := range f.Bars {
		if _, ok := d.metric(b.Metric); !ok {
			t.Errorf("bar %q names metric %q, which the bench does not compute", b.Text, b.Metric)
		}
	}
	if f, err := loadBars(filepath.Join(t.TempDir(), "none.json"), true); f != nil || err != nil {
		t.Errorf("optional missing file: %v, %v", f, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"bars":[{"metric":"x","at_most":1,"below":2}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadBars(bad, true); err == nil {
		t.Error("a bar with two bounds was accepted")
	}
}

func TestMarkdown(t *testing.T) {
	r := sampleReport()
	bars, err := loadBars("bars.json", false)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.markdown(&b, "bench.svg", bars)
	out := b.String()
	for _, want := range []string{
		"```sh\ngo run ./bench\n```", "#### The bar", "p99 ≤ 60 ms", "**71.0 ms**", "**1.25x**", "**18.00x**", "**0.500% of one core**",
		"| 100k | polling loop |", "#### Idle", "**floor**", "![", "(bench.svg)", `SELECT a \| b`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "%!") {
		t.Errorf("Markdown has a formatting error:\n%s", out)
	}
	// The bar's sizes, when the run measured others, are said to differ.
	r.Params.Quick = true
	for i := range r.Scale {
		r.Scale[i].W /= 10
	}
	for i := range r.Idle {
		r.Idle[i].W /= 10
	}
	r.Derived = derive(r)
	b.Reset()
	r.markdown(&b, "", bars)
	if !strings.Contains(b.String(), "not the bar's measurement") || !strings.Contains(b.String(), "not the bar's") {
		t.Errorf("a quick run's Markdown does not say it measured other sizes:\n%s", b.String())
	}
}

func TestSpliceDoc(t *testing.T) {
	doc := []byte("# Perf\n\nprose\n\n" + docBegin + "\nold tables\n" + docEnd + "\n\nmore prose\n")
	out, err := spliceDoc(doc, []byte("\nnew tables\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Perf\n\nprose\n\n" + docBegin + "\n\nnew tables\n\n" + docEnd + "\n\nmore prose\n"
	if string(out) != want {
		t.Errorf("spliced:\n%s\nwant:\n%s", out, want)
	}
	if _, err := spliceDoc([]byte("no markers"), nil); !errors.Is(err, errNoMarkers) {
		t.Errorf("no markers: %v", err)
	}
	if _, err := spliceDoc([]byte(docEnd+docBegin), nil); !errors.Is(err, errNoMarkers) {
		t.Errorf("markers in the wrong order: %v", err)
	}
}

func TestDrawChart(t *testing.T) {
	var b bytes.Buffer
	if err := drawChart(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, " ")
	for _, s := range allSeries {
		if !strings.Contains(all, s.label()) {
			t.Errorf("the chart has no legend entry %q", s.label())
		}
	}
	// Zero figures have no place on a log axis: left out, no panic.
	r := sampleReport()
	r.Scale[0].PerJob.DBMS = 0
	r.Scale = r.Scale[:1]
	if err := drawChart(io.Discard, r); err != nil {
		t.Errorf("one point, one zero: %v", err)
	}
	r.Scale = nil
	if err := drawChart(io.Discard, r); err == nil {
		t.Error("an empty chart drew without error")
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Scale) != 9 || back.Derived.DefaultP99MaxMS == nil || *back.Derived.DefaultP99MaxMS != 71 {
		t.Errorf("round trip lost data: %d rows, %+v", len(back.Scale), back.Derived)
	}
}

func TestFillScale(t *testing.T) {
	b := &bench{cfg: &config{}}
	rec := newRecorder([]jobwatch.JobID{1, 2, 3, 4})
	// Jobs 1 and 2 commit in batch 0 at t=1s, 3 and 4 in batch 1 at 2s.
	sec := int64(time.Second)
	commitAt := []int64{1 * sec, 2 * sec}
	rec.at = []int64{1*sec + int64(10*time.Millisecond), 1*sec - int64(time.Millisecond), 2*sec + int64(30*time.Millisecond), 0}
	row := scaleRow{W: 4, Cost: cost{ExecMS: 6}}
	b.fillScale(&row, rec, []int32{0, 0, 1, 1}, commitAt, 5*sec)
	if row.Resolved != 3 || row.Unresolved != 1 {
		t.Errorf("resolved %d, unresolved %d; want 3 and 1", row.Resolved, row.Unresolved)
	}
	// Latencies 10, 0 (returned first), 30, and 3000 (censored at 5 s).
	if row.Latency.N != 4 || row.Latency.Min != 0 || row.Latency.Max != 3000 || row.Latency.P50 != 20 {
		t.Errorf("latency %+v", row.Latency)
	}
	if row.PerJob.DBMS != 2 {
		t.Errorf("DB ms per resolved job %v, want 2", row.PerJob.DBMS)
	}
	if row.CompletionS != 1 || row.OfferedPerS != 4 {
		t.Errorf("completion %v s, offered %v/s", row.CompletionS, row.OfferedPerS)
	}
}
