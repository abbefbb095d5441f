package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// chart is a figure of side-by-side panels sharing a logarithmic x axis;
// each panel has a logarithmic y axis. It draws itself as SVG with the
// standard library only.
type chart struct {
	Title, Subtitle string
	XLabel          string
	Panels          []chartPanel
	Note            string // a line under the legend
}

type chartPanel struct {
	Title, YLabel string
	Series        []chartSeries
}

type chartSeries struct {
	Name, Color string
	Points      []chartPoint
}

// chartPoint is one measurement. Capped points (a run cut short by its
// time limit) are drawn hollow and labelled. Points with X or Y <= 0 (or
// not finite) cannot sit on a log axis and are left out.
type chartPoint struct {
	X, Y   float64
	Capped bool
}

func (p chartPoint) ok() bool {
	return p.X > 0 && p.Y > 0 && !math.IsInf(p.X, 0) && !math.IsInf(p.Y, 0) && !math.IsNaN(p.X) && !math.IsNaN(p.Y)
}

// Layout, in SVG user units.
const (
	svgPanelW   = 420 // width of one panel, plot and margins
	svgPlotW    = 330
	svgPlotH    = 260
	svgPlotLeft = 70 // left margin of each panel
	svgPlotTop  = 90
	svgLegendH  = 70
)

// logRange is a span of a logarithmic axis, in log10 units.
type logRange struct{ lo, hi float64 }

func (r logRange) pos(v float64, length float64) float64 {
	return (math.Log10(v) - r.lo) / (r.hi - r.lo) * length
}

// xRange spans every x with a little room on both sides.
func xRange(xs []float64) logRange {
	if len(xs) == 0 {
		return logRange{0, 1}
	}
	lo, hi := math.Log10(slices.Min(xs)), math.Log10(slices.Max(xs))
	if hi-lo < 1e-9 {
		return logRange{lo - 0.5, hi + 0.5}
	}
	pad := (hi - lo) * 0.08
	return logRange{lo - pad, hi + pad}
}

// yRange spans whole decades around every y.
func yRange(ys []float64) logRange {
	if len(ys) == 0 {
		return logRange{0, 1}
	}
	lo, hi := math.Floor(math.Log10(slices.Min(ys))), math.Ceil(math.Log10(slices.Max(ys)))
	if hi <= lo {
		hi = lo + 1
	}
	return logRange{lo, hi}
}

// yTicks returns the tick values of r: every decade, and 2 and 5 in
// between when the axis spans few decades.
func yTicks(r logRange) []float64 {
	var out []float64
	for k := int(r.lo); k <= int(r.hi); k++ {
		d := math.Pow(10, float64(k))
		out = append(out, d)
		if r.hi-r.lo <= 2 && k < int(r.hi) {
			out = append(out, 2*d, 5*d)
		}
	}
	return out
}

// tickLabel formats an axis value compactly: 0.01, 0.5, 20, 1k, 100k, 1M.
func tickLabel(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// writeSVG draws c. The output is a standalone SVG document (valid XML).
func (c chart) writeSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	var xs []float64
	for _, pn := range c.Panels {
		for _, s := range pn.Series {
			for _, pt := range s.Points {
				if pt.ok() {
					xs = append(xs, pt.X)
				}
			}
		}
	}
	xr := xRange(xs)
	xticks := slices.Compact(slices.Sorted(slices.Values(xs)))

	width := svgPanelW * max(len(c.Panels), 1)
	height := svgPlotTop + svgPlotH + 50 + svgLegendH
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", width/2, esc(c.Title))
	if c.Subtitle != "" {
		p(`<text x="%d" y="44" text-anchor="middle" fill="#444">%s</text>`+"\n", width/2, esc(c.Subtitle))
	}

	for i, pn := range c.Panels {
		left := float64(i*svgPanelW + svgPlotLeft)
		top := float64(svgPlotTop)
		var ys []float64
		for _, s := range pn.Series {
			for _, pt := range s.Points {
				if pt.ok() {
					ys = append(ys, pt.Y)
				}
			}
		}
		yr := yRange(ys)
		xAt := func(v float64) float64 { return left + xr.pos(v, svgPlotW) }
		yAt := func(v float64) float64 { return top + svgPlotH - yr.pos(v, svgPlotH) }

		p(`<g class="panel">` + "\n")
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n",
			left+svgPlotW/2, top-14, esc(pn.Title))
		// Grid and y ticks.
		for _, t := range yTicks(yr) {
			y := yAt(t)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+svgPlotW, y)
			p(`<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y+4, esc(tickLabel(t)))
		}
		for _, t := range xticks {
			x := xAt(t)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, top, x, top+svgPlotH)
			p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, top+svgPlotH+16, esc(tickLabel(t)))
		}
		// Axes and labels.
		p(`<rect x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, svgPlotW, svgPlotH)
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n",
			left+svgPlotW/2, top+svgPlotH+34, esc(c.XLabel))
		p(`<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`+"\n",
			left-50, top+svgPlotH/2, esc(pn.YLabel))
		// Series.
		for _, s := range pn.Series {
			pts := slices.DeleteFunc(slices.Clone(s.Points), func(pt chartPoint) bool { return !pt.ok() })
			slices.SortFunc(pts, func(a, b chartPoint) int { return cmpFloat(a.X, b.X) })
			if len(pts) == 0 {
				continue
			}
			var coords []string
			for _, pt := range pts {
				coords = append(coords, fmt.Sprintf("%.1f,%.1f", xAt(pt.X), yAt(pt.Y)))
			}
			p(`<g class="series"><title>%s</title>`+"\n", esc(s.Name))
			p(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(coords, " "), esc(s.Color))
			for _, pt := range pts {
				fill := s.Color
				if pt.Capped {
					fill = "white"
				}
				p(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="2"><title>%s</title></circle>`+"\n",
					xAt(pt.X), yAt(pt.Y), esc(fill), esc(s.Color), esc(pointTitle(s.Name, pt)))
				if pt.Capped {
					p(`<text x="%.1f" y="%.1f" font-size="10" fill="%s">capped</text>`+"\n", xAt(pt.X)+6, yAt(pt.Y)-6, esc(s.Color))
				}
			}
			p("</g>\n")
		}
		p("</g>\n")
	}

	// Legend: every series name once, in first-seen order.
	type entry struct{ name, color string }
	var legend []entry
	for _, pn := range c.Panels {
		for _, s := range pn.Series {
			if !slices.ContainsFunc(legend, func(e entry) bool { return e.name == s.Name }) {
				legend = append(legend, entry{s.Name, s.Color})
			}
		}
	}
	ly := float64(svgPlotTop + svgPlotH + 62)
	lx := float64(svgPlotLeft)
	for _, e := range legend {
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, ly, lx+24, ly, esc(e.color))
		p(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", lx+12, ly, esc(e.color))
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+30, ly+4, esc(e.name))
		lx += 30 + 7.5*float64(len(e.name)) + 30
	}
	if c.Note != "" {
		p(`<text x="%d" y="%.1f" fill="#555" font-size="11">%s</text>`+"\n", svgPlotLeft, ly+24, esc(c.Note))
	}
	p("</svg>\n")
	return bw.Flush()
}

func pointTitle(series string, pt chartPoint) string {
	s := fmt.Sprintf("%s: %s waiters, %s", series, tickLabel(pt.X), strconv.FormatFloat(pt.Y, 'g', 4, 64))
	if pt.Capped {
		s += " (capped)"
	}
	return s
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
