package main

import (
	"fmt"
	"slices"
)

// derived are the ratios the bar speaks of, computed from this
// run's rows. They are measurements, not verdicts: a separate check
// (bench/bar_test.go) compares them with bench/bars.json. A ratio that
// the run's series or sizes cannot give is absent.
type derived struct {
	// DefaultP99MaxMS is the largest p99 of the default series over W.
	DefaultP99MaxMS *float64 `json:"default_p99_max_ms,omitempty"`
	// DefaultDBPerJobGrowth is the default series' DB time per resolved
	// job at the largest W over that at the smallest.
	DefaultDBPerJobGrowth *float64 `json:"default_db_per_job_growth,omitempty"`
	// NoFeedOverDefault and PollingOverDefault are the DB time per
	// resolved job of WithChangeFeed(false) and of the polling loop over
	// the default's, at the largest W.
	NoFeedOverDefault  *float64 `json:"nofeed_over_default_db_per_job,omitempty"`
	PollingOverDefault *float64 `json:"polling_over_default_db_per_job,omitempty"`
	// IdleCorePct is the default series' DB time in the idle phase, as a
	// percentage of one core; IdleCorePctWithStartup counts start-up too.
	IdleCorePct            *float64 `json:"idle_core_pct,omitempty"`
	IdleCorePctWithStartup *float64 `json:"idle_core_pct_with_startup,omitempty"`
	// D0MedianOverFloor is the default series' debounce-0 median over the
	// floor.
	D0MedianOverFloor *float64 `json:"d0_median_over_floor,omitempty"`
	// Details says, per metric (by its JSON name), which figures it was
	// computed from.
	Details map[string]string `json:"details"`
}

func ptr(v float64) *float64 { return &v }

// derive computes the ratios from r's rows.
func derive(r *report) derived {
	d := derived{Details: map[string]string{}}
	byW := map[seriesID]map[int]scaleRow{}
	for _, row := range r.Scale {
		if byW[row.Series] == nil {
			byW[row.Series] = map[int]scaleRow{}
		}
		byW[row.Series][row.W] = row
	}
	if def := byW[seriesDefault]; len(def) > 0 {
		ws := sortedKeys(def)
		worst, detail := 0.0, ""
		for _, w := range ws {
			worst = max(worst, def[w].Latency.P99)
			detail += fmt.Sprintf("%sW=%s: %s ms", sep(detail), count(w), fmtMS(def[w].Latency.P99))
		}
		d.DefaultP99MaxMS, d.Details["default_p99_max_ms"] = ptr(worst), detail
		lo, hi := def[ws[0]], def[ws[len(ws)-1]]
		if len(ws) > 1 && lo.PerJob.DBMS > 0 {
			d.DefaultDBPerJobGrowth = ptr(hi.PerJob.DBMS / lo.PerJob.DBMS)
			d.Details["default_db_per_job_growth"] = fmt.Sprintf("%s ms at W=%s over %s ms at W=%s",
				fmtPerJob(hi.PerJob.DBMS), count(hi.W), fmtPerJob(lo.PerJob.DBMS), count(lo.W))
		}
		for _, o := range []struct {
			s    seriesID
			dst  **float64
			name string
		}{{seriesNoFeed, &d.NoFeedOverDefault, "nofeed_over_default_db_per_job"}, {seriesPolling, &d.PollingOverDefault, "polling_over_default_db_per_job"}} {
			other, ok := byW[o.s][hi.W]
			if !ok || hi.PerJob.DBMS <= 0 {
				continue
			}
			*o.dst = ptr(other.PerJob.DBMS / hi.PerJob.DBMS)
			d.Details[o.name] = fmt.Sprintf("%s ms over %s ms per resolved job at W=%s", fmtPerJob(other.PerJob.DBMS), fmtPerJob(hi.PerJob.DBMS), count(hi.W))
		}
	}
	for _, row := range r.Idle {
		if row.Series != seriesDefault {
			continue
		}
		d.IdleCorePct, d.IdleCorePctWithStartup = ptr(row.CorePct), ptr(row.CorePctWithStartup)
		d.Details["idle_core_pct"] = fmt.Sprintf("%s ms of DB time in %.0f s with %s jobs pending, after start-up", fmtMS(row.IdleCost.ExecMS), row.IdleS, count(row.W))
		d.Details["idle_core_pct_with_startup"] = fmt.Sprintf("start-up %s ms in %.2f s, then the idle phase", fmtMS(row.StartupCost.ExecMS), row.StartupS)
	}
	for _, row := range r.Debounce0 {
		if row.Series == seriesDefault && r.Floor != nil && r.Floor.FloorMS > 0 {
			d.D0MedianOverFloor = ptr(row.Latency.P50 / r.Floor.FloorMS)
			d.Details["d0_median_over_floor"] = fmt.Sprintf("median %s ms over floor %s ms", fmtMS(row.Latency.P50), fmtMS(r.Floor.FloorMS))
		}
	}
	return d
}

func sortedKeys(m map[int]scaleRow) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sep(s string) string {
	if s == "" {
		return ""
	}
	return ", "
}
