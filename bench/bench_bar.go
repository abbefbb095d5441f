package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// findScale returns the row of series at n waiters.
func findScale(rows []scaleRow, series string, n int) (scaleRow, bool) {
	for _, r := range rows {
		if r.Series == series && r.Waiters == n {
			return r, true
		}
	}
	return scaleRow{}, false
}

// pickSize returns want when the run measured it, else fallback.
func pickSize(sizes []int, want, fallback int) int {
	if slices.Contains(sizes, want) {
		return want
	}
	return fallback
}

// evaluateBar checks the run against design.md section 7 and the issue:
// debounce-0 median latency within 2x the raw floor; database time per
// resolved job at 100k within 2x of 1k; at 10k at least 10x less database
// time per resolved job than the polling baseline; under 1 KB per pending
// waiter. Where the run lacks a size, the closest it has stands in and
// the criterion says so.
func evaluateBar(r *benchReport) []barCheck {
	var out []barCheck

	lat := barCheck{Criterion: "debounce-0 median latency within 2x the raw floor", Target: "p50 <= 2 x floor"}
	for _, l := range r.Latency {
		if l.Series == seriesFeed && l.DebounceMS == 0 && l.Latency.N > 0 && r.Floor.FloorMS > 0 {
			lat.Evaluated = true
			lat.Met = l.Latency.P50 <= 2*r.Floor.FloorMS
			lat.Target = fmt.Sprintf("p50 <= 2 x %s ms = %s ms", fmtMS(r.Floor.FloorMS), fmtMS(2*r.Floor.FloorMS))
			lat.Measured = fmt.Sprintf("%s p50 %s ms = %.2fx the floor", seriesFeed, fmtMS(l.Latency.P50), l.Latency.P50/r.Floor.FloorMS)
		}
	}
	out = append(out, lat)

	sizes := slices.Sorted(slices.Values(r.Config.Sizes))
	growth := barCheck{Criterion: "database time per resolved job at 100k waiters within 2x of 1k", Target: "ratio <= 2"}
	if len(sizes) >= 2 {
		hi := pickSize(sizes, 100_000, sizes[len(sizes)-1])
		lo := sizes[0]
		if slices.Contains(sizes, 1000) && 1000 < hi {
			lo = 1000
		}
		a, okA := findScale(r.Scale, seriesFeed, lo)
		z, okZ := findScale(r.Scale, seriesFeed, hi)
		if lo != 1000 || hi != 100_000 {
			growth.Criterion = fmt.Sprintf("database time per resolved job at %d waiters within 2x of %d (this run lacks 1k or 100k)", hi, lo)
		}
		if okA && okZ && a.DBUSPerJob > 0 && hi > lo {
			ratio := z.DBUSPerJob / a.DBUSPerJob
			growth.Evaluated = true
			growth.Met = ratio <= 2
			growth.Measured = fmt.Sprintf("%s: %s us/job at %d, %s us/job at %d: %.2fx",
				seriesFeed, fmtNum(a.DBUSPerJob), lo, fmtNum(z.DBUSPerJob), hi, ratio)
		}
	}
	if !growth.Evaluated {
		growth.Measured = "not measured (needs two sizes)"
	}
	out = append(out, growth)

	vsBase := barCheck{Criterion: "at 10k waiters, >= 10x less database time per resolved job than the polling baseline", Target: "baseline / jobwatch >= 10"}
	if len(sizes) > 0 {
		n := pickSize(sizes, 10_000, sizes[len(sizes)-1])
		if n != 10_000 {
			vsBase.Criterion = fmt.Sprintf("at %d waiters (this run lacks 10k), >= 10x less database time per resolved job than the polling baseline", n)
		}
		jw, okJ := findScale(r.Scale, seriesFeed, n)
		base, okB := findScale(r.Scale, seriesBaseline, n)
		if okJ && okB && jw.DBUSPerJob > 0 && base.Resolved > 0 {
			ratio := base.DBUSPerJob / jw.DBUSPerJob
			vsBase.Evaluated = true
			vsBase.Met = ratio >= 10
			capped := ""
			if base.Capped {
				capped = " (baseline capped)"
			}
			vsBase.Measured = fmt.Sprintf("%s us/job vs baseline %s us/job: %.1fx less%s",
				fmtNum(jw.DBUSPerJob), fmtNum(base.DBUSPerJob), ratio, capped)
		}
	}
	if !vsBase.Evaluated {
		vsBase.Measured = "not measured"
	}
	out = append(out, vsBase)

	mem := barCheck{Criterion: "memory per pending waiter under 1 KB", Target: "< 1024 B"}
	if len(sizes) > 0 {
		n := sizes[len(sizes)-1]
		for _, m := range r.Memory {
			if m.Series == seriesFeed && m.Waiters == n {
				mem.Evaluated = true
				mem.Met = m.BytesPerWaiter < 1024
				mem.Measured = fmt.Sprintf("%.0f B per waiter at %d waiters", m.BytesPerWaiter, n)
			}
		}
	}
	if !mem.Evaluated {
		mem.Measured = "not measured"
	}
	out = append(out, mem)
	return out
}

// seriesColors are the chart's colors, by series.
var seriesColors = map[string]string{
	seriesFeed:     "#1f77b4",
	seriesNoFeed:   "#ff7f0e",
	seriesBaseline: "#d62728",
}

// benchChart draws latency (p50 under load) and database time per resolved
// job against the number of waiters, one series per way of waiting.
func benchChart(r *benchReport) chart {
	latency := chartPanel{Title: "Latency under load (p50)", YLabel: "commit -> wait returns, ms (log)"}
	dbTime := chartPanel{Title: "Database time per resolved job", YLabel: "µs per job (log)"}
	for _, name := range []string{seriesFeed, seriesNoFeed, seriesBaseline} {
		ls := chartSeries{Name: name, Color: seriesColors[name]}
		ds := chartSeries{Name: name, Color: seriesColors[name]}
		for _, row := range r.Scale {
			if row.Series != name {
				continue
			}
			x := float64(row.Waiters)
			if row.Latency.N > 0 {
				ls.Points = append(ls.Points, chartPoint{X: x, Y: row.Latency.P50, Capped: row.Capped})
			}
			if row.Resolved > 0 {
				ds.Points = append(ds.Points, chartPoint{X: x, Y: row.DBUSPerJob, Capped: row.Capped})
			}
		}
		latency.Series = append(latency.Series, ls)
		dbTime.Series = append(dbTime.Series, ds)
	}
	note := fmt.Sprintf("Database time: summed client-side wall time of status reads. Hollow points: baseline capped at %gs.",
		r.Config.BaselineTimeoutS)
	if !r.ChangeFeed.Backend {
		note += " No ChangeFeed in this backend: feed = no feed."
	}
	pg := r.Machine.PostgreSQL
	if f := strings.Fields(pg); len(f) >= 2 {
		pg = f[0] + " " + f[1]
	}
	return chart{
		Title: fmt.Sprintf("jobwatch bench: %s driver, %s, %d CPUs", r.Config.Driver, pg, r.Machine.CPUs),
		Subtitle: fmt.Sprintf("N waiters pending; jobs complete %d per transaction; debounce %g ms; baseline polls every %g ms",
			r.Config.BatchSize, r.Config.DefaultDebounceMS, r.Config.PollIntervalMS),
		XLabel: "pending waiters (log)",
		Panels: []chartPanel{latency, dbTime},
		Note:   note,
	}
}

func writeChartFile(path string, r *benchReport) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := benchChart(r).writeSVG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
