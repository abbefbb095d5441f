package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

const (
	// progressRefresh is how often the bar is redrawn while nothing
	// settles, so that its elapsed time moves.
	progressRefresh = time.Second
	// progressEvery is the least time between two draws as jobs settle.
	progressEvery = 50 * time.Millisecond
	// progressOverhead is what progressbar draws besides the description,
	// the bar's cells and the elapsed time: "%4d%% ", "|", "|", " ", " [",
	// "]" and a trailing space.
	progressOverhead = 13
	// noTerminalWidth is the width assumed with --progress always when
	// standard error is not a terminal.
	noTerminalWidth = 80
)

// progress draws `3/10 settled  30% |███       |  [2s]` on standard error
// while jobs settle: from the start, redrawn every progressRefresh, never
// wider than the terminal (read again at each draw), ending as one final
// line. It draws nothing unless it is on: on a terminal in mode auto, or
// in mode always.
type progress struct {
	mu    sync.Mutex // serialises every call on bar, including the ticker's
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int
	n     int
	start time.Time
	drawn time.Time // the latest draw
	shown bool      // something is on the line
	stop  chan struct{}
	wg    sync.WaitGroup
}

// newProgress returns a bar for total jobs. mode is "always", "never", or
// "auto": only when w is a terminal and there is more than one job.
func newProgress(w io.Writer, total int, mode string) *progress {
	p := &progress{w: w, total: total, start: time.Now()}
	if mode != "always" && (mode != "auto" || !isTerminal(w) || total < 2) {
		return p
	}
	p.bar = progressbar.NewOptions(max(total, 1),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(40), // progressbar narrows it to the terminal at each draw
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(0), // draw decides
	)
	p.draw()
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go p.tick()
	return p
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// width is the terminal's width now.
func (p *progress) width() int {
	if f, ok := p.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	return noTerminalWidth
}

// describe is the description that fits a line of width columns with at
// least a few cells of bar: "3/10 settled", else "3/10"; false when not
// even the numbers fit.
func (p *progress) describe(width int) (string, bool) {
	elapsed := (time.Since(p.start) / time.Second * time.Second).String()
	room := width - progressOverhead - len(elapsed)
	for _, d := range []string{fmt.Sprintf("%d/%d settled", p.n, p.total), fmt.Sprintf("%d/%d", p.n, p.total)} {
		if len(d)+4 <= room {
			return d, true
		}
	}
	return "", false
}

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(progressRefresh)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		case <-p.stop:
			return
		}
	}
}

// draw draws the bar as it is now, or nothing on a terminal too narrow
// for it; p.mu must be held.
func (p *progress) draw() {
	desc, fits := p.describe(p.width())
	if !fits {
		p.clear()
		return
	}
	_ = p.bar.Set(p.n)
	p.bar.Describe(desc) // draws
	p.drawn, p.shown = time.Now(), true
}

func (p *progress) clear() {
	if p.shown {
		_ = p.bar.Clear()
		p.shown = false
	}
}

// add counts n more settled jobs.
func (p *progress) add(n int) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if time.Since(p.drawn) >= progressEvery {
		p.draw()
	}
}

// around runs print with the bar erased, so that a line written to the
// same terminal (standard output or error) never lands inside the bar;
// the bar is drawn again afterwards.
func (p *progress) around(print func()) {
	if p.bar == nil {
		print()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	print()
	p.draw()
}

// done stops the ticker and leaves the final state as one line. It is
// idempotent.
func (p *progress) done() {
	if p.bar == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	if p.shown {
		fmt.Fprintln(p.w)
	}
	p.bar = nil
}
