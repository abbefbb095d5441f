package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
)

// screen is a minimal terminal: it keeps the characters written at each
// position, and notes any line that would wrap.
type screen struct {
	cols     int
	rows     [][]rune
	row, col int
	wrapped  []string
}

func (s *screen) write(b []byte) {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		switch {
		case r == '\r':
			s.col = 0
		case r == '\n':
			s.row++
			s.col = 0 // the terminal's ONLCR
		case r == 0x1b:
			b = s.escape(b)
		case r < ' ':
		default:
			s.put(r)
		}
	}
}

// escape handles a CSI sequence: erase in line, cursor movement is not
// expected of the bar.
func (s *screen) escape(b []byte) []byte {
	if len(b) == 0 || b[0] != '[' {
		return b
	}
	i := 1
	for i < len(b) && (b[i] < '@' || b[i] > '~') {
		i++
	}
	if i < len(b) && b[i] == 'K' {
		s.line()
		s.rows[s.row] = s.rows[s.row][:min(s.col, len(s.rows[s.row]))]
	}
	return b[min(i+1, len(b)):]
}

func (s *screen) line() {
	for len(s.rows) <= s.row {
		s.rows = append(s.rows, nil)
	}
}

func (s *screen) put(r rune) {
	s.line()
	if s.col >= s.cols {
		s.wrapped = append(s.wrapped, string(s.rows[s.row]))
		s.row++
		s.col = 0
		s.line()
	}
	line := s.rows[s.row]
	for len(line) <= s.col {
		line = append(line, ' ')
	}
	line[s.col] = r
	s.rows[s.row] = line
	s.col++
}

// lines are the screen's rows, trailing blanks trimmed, empty rows at the
// end dropped.
func (s *screen) lines() []string {
	var out []string
	for _, r := range s.rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// runOnTerminal runs the binary with standard error (and standard output
// too, when both) on a pseudo-terminal of cols columns; it returns what
// the terminal received and standard output when it was a pipe.
func runOnTerminal(t *testing.T, cols uint16, both bool, args ...string) (term []byte, stdout string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = filterEnv(os.Environ(), "DATABASE_URL=", "PGQUEUER_PREFIX=")
	var out bytes.Buffer
	cmd.Stdin, cmd.Stderr, cmd.Stdout = nil, tty, &out
	if both {
		cmd.Stdout = tty
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO once the command has closed the terminal
		read <- b
	}()
	var exit *exec.ExitError
	if err := cmd.Wait(); err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return <-read, out.String()
}

// The bar is drawn from the start, refreshed while nothing settles, never
// wider than the terminal, and ends as one line; standard output's lines
// are what they are without a terminal, and on the same terminal they
// stand whole above the bar.
func TestProgressOnATerminal(t *testing.T) {
	tests := []struct {
		cols uint16
		both bool // standard output on the terminal too
	}{{30, false}, {200, false}, {30, true}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d columns, stdout on it %v", tt.cols, tt.both), func(t *testing.T) {
			d := newDB(t, "pgx")
			ids := d.enqueue(3)
			go func() {
				time.Sleep(1500 * time.Millisecond) // a tick of the bar before any job settles
				d.apply(complete, ids[0])
				time.Sleep(time.Second)
				d.apply(complete, ids[1:]...)
			}()
			args := append(append([]string{"wait"}, d.flags...), strIDs(ids...)...)
			raw, stdout := runOnTerminal(t, tt.cols, tt.both, args...)
			s := &screen{cols: int(tt.cols)}
			s.write(raw)
			if len(s.wrapped) > 0 {
				t.Errorf("lines wrapped at %d columns: %q", tt.cols, s.wrapped)
			}
			if !bytes.Contains(raw, []byte("\r0/3 settled")) || !bytes.Contains(raw, []byte("[1s]")) {
				t.Errorf("not drawn from the start, or not refreshed with the elapsed time: %q", raw)
			}
			plain := d.cmd("", "wait", strIDs(ids...)...)
			want := []string{}
			if tt.both {
				stdout = ""
				want = strings.Split(strings.TrimSuffix(plain.stdout, "\n"), "\n")
			}
			lines := s.lines()
			jobs := append([]string{}, lines[:max(len(lines)-1, 0)]...)
			slices.Sort(jobs) // jobs settling in one read print in any order
			slices.Sort(want)
			if len(lines) != len(want)+1 || !strings.HasPrefix(lines[len(lines)-1], "3/3 settled") || !slices.Equal(jobs, want) {
				t.Errorf("screen %q, want %q and one final line 3/3 settled (received %q)", lines, want, raw)
			}
			if !tt.both && (stdout != plain.stdout || plain.stderr != "") {
				t.Errorf("stdout with the bar %q, without %q (stderr %q)", stdout, plain.stdout, plain.stderr)
			}
		})
	}
}

// At any width, with any count, the bar never wraps: it shortens its
// description, narrows its cells, or draws nothing at all.
func TestProgressNeverWraps(t *testing.T) {
	for _, cols := range []uint16{8, 16, 20, 24, 30, 40, 80, 200} {
		for _, total := range []int{2, 100_000} {
			t.Run(fmt.Sprintf("%d columns, %d jobs", cols, total), func(t *testing.T) {
				ptmx, tty, err := pty.Open()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ptmx.Close() })
				if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 10, Cols: cols}); err != nil {
					t.Fatal(err)
				}
				read := make(chan []byte)
				go func() { b, _ := io.ReadAll(ptmx); read <- b }()
				p := newProgress(tty, total, "auto")
				for i := 0; i < total; i += max(total/7, 1) {
					p.add(min(max(total/7, 1), total-i))
					p.around(func() {})
				}
				p.done()
				tty.Close()
				raw := <-read
				s := &screen{cols: int(cols)}
				s.write(raw)
				if len(s.wrapped) > 0 {
					t.Errorf("wrapped: %q (received %q)", s.wrapped, raw)
				}
				if lines := s.lines(); len(lines) > 1 {
					t.Errorf("screen %q, want at most one line", lines)
				}
			})
		}
	}
}
