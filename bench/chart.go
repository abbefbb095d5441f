package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// seriesColor keeps each series' colour the same in both panels.
var seriesColor = map[seriesID]color.RGBA{
	seriesDefault: {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	seriesNoFeed:  {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	seriesPolling: {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

// panel is one plot of the chart: a figure of the scale rows against W.
type panel struct {
	title, ylabel string
	value         func(scaleRow) float64
}

var chartPanels = []panel{
	{"p99 latency, commit to Wait returning", "ms", func(r scaleRow) float64 { return r.Latency.P99 }},
	{"DB time per resolved job (pg_stat_statements)", "ms", func(r scaleRow) float64 { return r.PerJob.DBMS }},
}

// writeChart draws the chart of r's scale rows as SVG into path.
func writeChart(path string, r *report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := drawChart(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawChart draws one panel per figure, side by side, log-log.
func drawChart(w io.Writer, r *report) (err error) {
	defer func() {
		// The plotting library panics on input it cannot scale; the bench
		// reports that as an error instead.
		if p := recover(); p != nil {
			err = fmt.Errorf("chart: %v", p)
		}
	}()
	if len(r.Scale) == 0 {
		return errors.New("chart: the run has no scale rows to draw")
	}
	plots := make([][]*plot.Plot, 1)
	for _, pn := range chartPanels {
		p, err := r.plotPanel(pn)
		if err != nil {
			return err
		}
		plots[0] = append(plots[0], p)
	}
	const width, height = 10 * vg.Inch, 4 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots[0]), PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for j, p := range plots[0] {
		p.Draw(canvases[0][j])
	}
	_, err = c.WriteTo(w)
	return err
}

func (r *report) plotPanel(pn panel) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.title
	p.X.Label.Text = "W, jobs waited on"
	p.Y.Label.Text = pn.ylabel
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range allSeries {
		var pts plotter.XYs
		for _, row := range r.Scale {
			// A log axis has no place for zero.
			if v := pn.value(row); row.Series == s && v > 0 && row.W > 0 {
				pts = append(pts, plotter.XY{X: float64(row.W), Y: v})
				xmin, xmax = math.Min(xmin, float64(row.W)), math.Max(xmax, float64(row.W))
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = seriesColor[s], seriesColor[s]
		line.Width = vg.Points(1.5)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(s.label(), line, points)
	}
	if math.IsInf(xmin, 1) {
		p.Title.Text += " (no positive figure to draw)"
		xmin, xmax, ymin, ymax = 100, 100_000, 0.1, 1
	}
	// Room around the points (above them for the legend), and a range
	// even for a single point.
	p.X.Min, p.X.Max = xmin/2, xmax*2
	p.Y.Min, p.Y.Max = ymin/3, ymax*12
	return p, nil
}
