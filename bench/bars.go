package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// barFile is bench/bars.json: the bar, as data. The bench shows
// each bar next to the figure it is about and leaves the verdict to a
// separate check (bar_test.go), so no criterion is compiled into a binary.
type barFile struct {
	Source string `json:"source"`
	Bars   []bar  `json:"bars"`
	path   string // where it was read from
}

// bar is one criterion: a derived metric (by its JSON name) and a bound.
type bar struct {
	Metric  string   `json:"metric"`
	Text    string   `json:"text"`
	AtMost  *float64 `json:"at_most,omitempty"`
	AtLeast *float64 `json:"at_least,omitempty"`
	Below   *float64 `json:"below,omitempty"`
	// Sizes are the W the bar speaks of; a run at other sizes measures
	// something else, and the report says so.
	Sizes []int `json:"sizes,omitempty"`
	// MinSpreadS and MinIdleS are the least completion spread and idle
	// phase the bar speaks of.
	MinSpreadS float64 `json:"min_spread_s,omitempty"`
	MinIdleS   float64 `json:"min_idle_s,omitempty"`
}

// notTheBars says how r was not measured as b speaks of, or "".
func (r *report) notTheBars(b bar) string {
	var why []string
	if r.Params.Quick {
		why = append(why, "a quick run")
	}
	if missing := r.missingSizes(b.Sizes); missing != "" {
		why = append(why, "no figure at the bar's W="+missing)
	}
	if b.MinSpreadS > 0 && r.Params.SpreadS < b.MinSpreadS {
		why = append(why, fmt.Sprintf("completions spread over %.0f s, not %.0f s", r.Params.SpreadS, b.MinSpreadS))
	}
	if b.MinIdleS > 0 && r.Params.IdleS < b.MinIdleS {
		why = append(why, fmt.Sprintf("an idle phase of %.0f s, not %.0f s", r.Params.IdleS, b.MinIdleS))
	}
	return strings.Join(why, "; ")
}

// loadBars reads a bar file. A missing file gives nil and no error when
// optional (the default path, run from elsewhere than the repository).
func loadBars(path string, optional bool) (*barFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f := barFile{path: path}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, b := range f.Bars {
		n := 0
		for _, p := range []*float64{b.AtMost, b.AtLeast, b.Below} {
			if p != nil {
				n++
			}
		}
		if b.Metric == "" || n != 1 {
			return nil, fmt.Errorf("%s: bar %d needs a metric and exactly one of at_most, at_least, below", path, i+1)
		}
	}
	return &f, nil
}

// metric returns the derived metric named name, if the run measured it.
func (d derived) metric(name string) (float64, bool) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, false
	}
	v, ok := m[name].(float64)
	return v, ok
}
