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

// progressRefresh is how often the bar is redrawn while nothing settles,
// so that its elapsed time moves.
const progressRefresh = time.Second

// progress draws `3/10 settled [====      ] [2s]` on standard error while
// jobs settle: from the start, refreshed every progressRefresh, never wider
// than the terminal, and ending in one final line. It draws nothing unless
// it is on: on a terminal in mode auto, or in mode always.
type progress struct {
	mu    sync.Mutex // serialises every call on bar, including the ticker's
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int
	n     int
	stop  chan struct{}
	wg    sync.WaitGroup
}

// newProgress returns a bar for total jobs. mode is "always", "never", or
// "auto": only when w is a terminal and there is more than one job.
func newProgress(w io.Writer, total int, mode string) *progress {
	p := &progress{w: w, total: total}
	if mode != "always" && (mode != "auto" || !isTerminal(w) || total < 2) {
		return p
	}
	p.bar = progressbar.NewOptions(max(total, 1),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(p.describe()),
		progressbar.OptionSetWidth(40), // shrunk to fit the terminal at each draw
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(50*time.Millisecond),
	)
	p.redraw()
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

func (p *progress) describe() string { return fmt.Sprintf("%d/%d settled", p.n, p.total) }

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(progressRefresh)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.mu.Lock()
			p.redraw()
			p.mu.Unlock()
		case <-p.stop:
			return
		}
	}
}

// redraw draws the bar as it is now; p.mu must be held.
func (p *progress) redraw() {
	p.bar.Describe(p.describe()) // Describe draws
}

// add counts n more settled jobs.
func (p *progress) add(n int) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if p.n < p.total {
		p.bar.Describe(p.describe())
		_ = p.bar.Add(n)
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
	_ = p.bar.Clear()
	print()
	p.redraw()
}

// done stops the ticker and leaves the final state on one line. It is
// idempotent.
func (p *progress) done() {
	if p.bar == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Clear()
	p.bar.Describe(p.describe())
	if p.n >= p.total {
		_ = p.bar.Finish()
	}
	fmt.Fprintln(p.w)
	p.bar = nil
}
