package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5}
	tests := []struct {
		p, want float64
	}{
		{0, 1}, {0.25, 2}, {0.5, 3}, {0.9, 4.6}, {0.99, 4.96}, {1, 5}, {-1, 1}, {2, 5},
	}
	for _, tt := range tests {
		if got := percentile(s, tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", s, tt.p, got, tt.want)
		}
	}
	if got := percentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("one sample: %v, want 7", got)
	}
	if got := percentile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("empty: %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	in := []float64{5, 1, 4, 2, 3, 100}
	orig := slices.Clone(in)
	d := summarize(in)
	if !slices.Equal(in, orig) {
		t.Errorf("summarize modified its input: %v", in)
	}
	if d.N != 6 || d.Min != 1 || d.Max != 100 || d.P50 != 3.5 || math.Abs(d.Mean-115.0/6) > 1e-9 {
		t.Errorf("summarize = %+v", d)
	}
	if !(d.Min <= d.P50 && d.P50 <= d.P90 && d.P90 <= d.P99 && d.P99 <= d.Max) {
		t.Errorf("percentiles out of order: %+v", d)
	}
	if z := summarize(nil); z != (dist{}) {
		t.Errorf("summarize(nil) = %+v, want zero", z)
	}
	if got := nonNegative(-time.Millisecond); got != 0 {
		t.Errorf("nonNegative(-1ms) = %v", got)
	}
	if got := ms(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("ms(1.5ms) = %v", got)
	}
}

// parseSVG checks that doc is well-formed XML with an <svg> root and
// returns how many times each element name occurs.
func parseSVG(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	counts := map[string]int{}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not valid XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", se.Name.Space)
				}
			}
			counts[se.Name.Local]++
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return counts
}

func TestChartSVG(t *testing.T) {
	c := chart{
		Title:    `Latency & cost <of> "waiting"`,
		Subtitle: "sub",
		XLabel:   "waiters",
		Panels: []chartPanel{
			{Title: "p50", YLabel: "ms", Series: []chartSeries{
				{Name: "a <feed>", Color: "#123456", Points: []chartPoint{{X: 1000, Y: 0.3}, {X: 100_000, Y: 0.5}, {X: 10_000, Y: 0.4}}},
				{Name: "b & c", Color: "red", Points: []chartPoint{{X: 1000, Y: 50}, {X: 100_000, Y: 900, Capped: true}}},
			}},
			{Title: "db", YLabel: "us", Series: []chartSeries{
				{Name: "a <feed>", Color: "#123456", Points: []chartPoint{{X: 1000, Y: 2}, {X: 100_000, Y: 0}, {X: 10_000, Y: math.NaN()}}},
				{Name: "empty", Color: "blue"},
			}},
		},
		Note: "note & more",
	}
	var buf bytes.Buffer
	if err := c.writeSVG(&buf); err != nil {
		t.Fatal(err)
	}
	doc := buf.Bytes()
	counts := parseSVG(t, doc)
	// Panel 1: two series; panel 2: one drawable series (one valid point).
	if counts["polyline"] != 3 {
		t.Errorf("%d polylines, want 3", counts["polyline"])
	}
	// 3+2+1 markers, plus one legend marker per distinct series (3).
	if counts["circle"] != 9 {
		t.Errorf("%d circles, want 9", counts["circle"])
	}
	s := string(doc)
	for _, want := range []string{"a &lt;feed&gt;", "b &amp; c", "capped", "Latency &amp; cost", "1k", "100k", "note &amp; more"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("SVG holds a non-finite number:\n%s", s)
	}

	// A chart without any point is still a valid document.
	buf.Reset()
	if err := (chart{Title: "nothing", Panels: []chartPanel{{Title: "x"}}}).writeSVG(&buf); err != nil {
		t.Fatal(err)
	}
	parseSVG(t, buf.Bytes())
}

func TestAxes(t *testing.T) {
	if got := yTicks(yRange([]float64{0.2, 40})); !slices.Equal(got, []float64{0.1, 1, 10, 100}) {
		t.Errorf("yTicks over 3 decades = %v", got)
	}
	if got := yTicks(yRange([]float64{3, 7})); !slices.Equal(got, []float64{1, 2, 5, 10}) {
		t.Errorf("yTicks over 1 decade = %v", got)
	}
	r := xRange([]float64{1000, 100_000})
	if !(r.lo < 3 && r.hi > 5) {
		t.Errorf("xRange = %+v, want room around 3..5", r)
	}
	if r := xRange([]float64{1000}); r.hi-r.lo != 1 {
		t.Errorf("xRange of one value = %+v", r)
	}
	for v, want := range map[float64]string{1000: "1k", 100_000: "100k", 2e6: "2M", 0.01: "0.01", 50: "50", 1500: "1500"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q, want %q", v, got, want)
		}
	}
}

// sampleReport is a plausible report, as a run at 1k, 10k and 100k
// waiters would give it.
func sampleReport() *benchReport {
	r := &benchReport{
		Machine:    machineInfo{OS: "linux", Arch: "amd64", CPUs: 2, Go: "go1.x", PostgreSQL: "PostgreSQL 15.2 on x86_64"},
		Config:     benchParams{Driver: "pgx", Sizes: []int{1000, 10_000, 100_000}, BatchSize: 500, DefaultDebounceMS: 50, PollIntervalMS: 100, BaselineTimeoutS: 45, RefreshS: 5},
		ChangeFeed: feedInfo{Backend: true, Note: "feed"},
		Floor:      floorResult{NotifyRoundTrip: dist{N: 10, P50: 0.1}, StatusRead: dist{N: 10, P50: 0.05}, FloorMS: 0.15},
		Latency: []latencyRow{
			{Series: seriesFeed, DebounceMS: 0, Latency: dist{N: 10, P50: 0.25, P90: 0.3, P99: 0.5, Max: 0.6}},
			{Series: seriesNoFeed, DebounceMS: 0, Latency: dist{N: 10, P50: 0.2}},
			{Series: seriesBaseline, DebounceMS: 100, Latency: dist{N: 10, P50: 50}},
		},
	}
	for _, n := range r.Config.Sizes {
		f := float64(n)
		r.Scale = append(r.Scale,
			scaleRow{Series: seriesFeed, Waiters: n, Resolved: n, DBUSPerJob: 3, Latency: dist{N: n, P50: 50}},
			scaleRow{Series: seriesNoFeed, Waiters: n, Resolved: n, DBUSPerJob: 3 * f / 1000, Latency: dist{N: n, P50: 60}},
			scaleRow{Series: seriesBaseline, Waiters: n, Resolved: n / 2, Capped: n == 100_000, DBUSPerJob: 80, Latency: dist{N: n, P50: 80}},
		)
		r.Memory = append(r.Memory, memoryRow{Series: seriesFeed, Waiters: n, BytesPerWaiter: 300})
	}
	r.WaitAll = []waitAllRow{{Series: seriesFeed, Jobs: 100_000, Resolved: 100_000, Seconds: 0.4}}
	r.Notes = []string{"a note"}
	return r
}

func TestEvaluateBar(t *testing.T) {
	r := sampleReport()
	bar := evaluateBar(r)
	if len(bar) != 4 {
		t.Fatalf("%d criteria, want 4: %+v", len(bar), bar)
	}
	for i, b := range bar { // 0.25 <= 2 x 0.15 ms; 3/3 us; 80/3 = 26.7x; 300 B
		if !b.Evaluated || !b.Met {
			t.Errorf("criterion %d (%s) should be met: %+v", i, b.Criterion, b)
		}
	}

	r.Latency[0].Latency.P50 = 0.31 // just over 2 x 0.15
	r.Scale[6].DBUSPerJob = 6.1     // feed at 100k: 2.03x of 1k
	r.Scale[3].DBUSPerJob = 9       // feed at 10k: baseline 80 / 9 < 10
	r.Memory[2].BytesPerWaiter = 1024
	for i, b := range evaluateBar(r) {
		if !b.Evaluated || b.Met {
			t.Errorf("criterion %d (%s) should fail: %+v", i, b.Criterion, b)
		}
	}

	// A run at one size cannot judge growth; one without 10k says which
	// size stands in.
	r = sampleReport()
	r.Config.Sizes = []int{100}
	r.Scale = []scaleRow{{Series: seriesFeed, Waiters: 100, Resolved: 100, DBUSPerJob: 3}, {Series: seriesBaseline, Waiters: 100, Resolved: 100, DBUSPerJob: 90}}
	bar = evaluateBar(r)
	if bar[1].Evaluated {
		t.Errorf("growth judged from one size: %+v", bar[1])
	}
	if !bar[2].Evaluated || !bar[2].Met || !strings.Contains(bar[2].Criterion, "at 100 waiters") {
		t.Errorf("baseline criterion at the only size: %+v", bar[2])
	}
}

func TestReportText(t *testing.T) {
	r := sampleReport()
	r.Latency[0].Latency.P50 = 1 // over 2 x the floor
	r.Bar = evaluateBar(r)
	var buf bytes.Buffer
	r.writeText(&buf)
	out := buf.String()
	for _, want := range []string{"Raw floor", "Latency", "Scale", "WaitAll", "Memory", "The bar", "[MEETS]", "[FAILS]",
		seriesFeed, seriesNoFeed, seriesBaseline, "(capped)", "note: a note", "PostgreSQL 15.2"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	var svg bytes.Buffer
	if err := benchChart(sampleReport()).writeSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if counts := parseSVG(t, svg.Bytes()); counts["polyline"] != 6 {
		t.Errorf("bench chart has %d polylines, want 6 (3 series x 2 panels)", counts["polyline"])
	}
}
