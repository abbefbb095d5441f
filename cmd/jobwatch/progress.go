package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a bar on a terminal. On anything else it draws nothing, so
// it never mixes into output that a script reads.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	total int
	n     int
	drawn time.Time
}

// newProgress returns a bar for total jobs. mode is "always", "never", or
// "auto": only on a terminal and for more than one job.
func newProgress(w io.Writer, total int, mode string) *progress {
	on := mode == "always" || (mode == "auto" && isTerminal(w) && total > 1)
	return &progress{w: w, on: on, total: total}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if p.on && (time.Since(p.drawn) > 50*time.Millisecond || p.n == p.total) {
		p.draw()
	}
}

// erase clears the bar's line, so that an output line printed to the same
// terminal does not land behind it; the next add draws it again.
func (p *progress) erase() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on && !p.drawn.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = time.Time{}
	}
}

func (p *progress) draw() {
	const width = 40
	filled := width * p.n / max(p.total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d settled", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
	p.drawn = time.Now()
}

// done draws the final state and ends the line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
