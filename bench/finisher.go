package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/dbconn"
	"github.com/jobwatch/jobwatch/statemachine"
)

// envFinisher, set to "1", makes the bench's binary run as the finisher:
// the separate process that completes the jobs on the workers' role.
const envFinisher = "JOBWATCH_BENCH_FINISHER"

// finisherSpec is what the finisher reads, as one JSON line on standard
// input (the DSN holds a password: never on the command line).
type finisherSpec struct {
	DSN      string           `json:"dsn"`
	Schema   string           `json:"schema"`
	IDs      []jobwatch.JobID `json:"ids"`
	Batches  []int            `json:"batches"`  // jobs per transaction, in order
	Interval time.Duration    `json:"interval"` // between two transactions' starts
}

// runFinisher is the finisher process. It connects, prints "ready", waits
// for a line "go", then completes spec.IDs in transactions of
// spec.Batches, one every spec.Interval on an absolute schedule (a late
// transaction does not shift the next ones), printing "<batch>
// <unix-nanoseconds>" when each commit has returned and "done" at the end.
// It stops at the first error, printing "error <message>".
func runFinisher(stdin io.Reader, stdout io.Writer) int {
	if err := finish(stdin, stdout); err != nil {
		fmt.Fprintf(stdout, "error %s\n", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	fmt.Fprintln(stdout, "done")
	return 0
}

func finish(stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read the spec: %w", err)
	}
	var spec finisherSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("read the spec: %w", err)
	}
	total := 0
	for _, n := range spec.Batches {
		total += n
	}
	if total != len(spec.IDs) || spec.Interval < 0 {
		return fmt.Errorf("bad spec: %d ids, batches for %d, interval %s", len(spec.IDs), total, spec.Interval)
	}
	// The parent closes our standard input when it gives up on us.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: spec.DSN, Driver: "pgx", Schema: spec.Schema, MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintln(stdout, "ready")
	goLine, err := in.ReadString('\n')
	if err != nil || strings.TrimSpace(goLine) != "go" {
		return errors.New("no go")
	}
	go func() {
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()
	start := time.Now()
	off := 0
	for k, n := range spec.Batches {
		if d := time.Until(start.Add(time.Duration(k) * spec.Interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := db.Queue.Apply(ctx, statemachine.Complete, spec.IDs[off:off+n]...); err != nil {
			return fmt.Errorf("complete batch %d: %w", k, err)
		}
		fmt.Fprintf(stdout, "%d %d\n", k, time.Now().UnixNano())
		off += n
	}
	return nil
}

// finisher is the parent's handle on a finisher process.
type finisher struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	commitAt []int64 // unix nanoseconds, by batch; written before done closes
	done     chan struct{}
	err      error // the process's failure; read after done closes
	ready    chan struct{}
}

// startFinisher starts the finisher process for spec and returns once it
// is connected and waits for go.
func startFinisher(ctx context.Context, spec finisherSpec) (*finisher, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), envFinisher+"=1")
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the finisher: %w", err)
	}
	f := &finisher{cmd: cmd, stdin: stdin, commitAt: make([]int64, len(spec.Batches)), done: make(chan struct{}), ready: make(chan struct{})}
	go f.read(stdout)
	b, err := json.Marshal(spec)
	if err == nil {
		_, err = stdin.Write(append(b, '\n'))
	}
	if err != nil {
		f.close()
		return nil, fmt.Errorf("start the finisher: %w", err)
	}
	select {
	case <-f.ready:
		return f, nil
	case <-f.done:
		f.close()
		return nil, fmt.Errorf("the finisher did not start: %w", f.err)
	case <-ctx.Done():
		f.close()
		return nil, ctx.Err()
	}
}

// read follows the finisher's output until it ends, then reaps it.
func (f *finisher) read(stdout io.Reader) {
	defer close(f.done)
	sc := bufio.NewScanner(stdout)
	finished := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ready":
			close(f.ready)
		case line == "done":
			finished = true
		case strings.HasPrefix(line, "error "):
			f.err = errors.New(strings.TrimPrefix(line, "error "))
		default:
			k, ns, ok := strings.Cut(line, " ")
			i, err1 := strconv.Atoi(k)
			t, err2 := strconv.ParseInt(ns, 10, 64)
			if ok && err1 == nil && err2 == nil && i >= 0 && i < len(f.commitAt) {
				f.commitAt[i] = t
			}
		}
	}
	werr := f.cmd.Wait()
	if f.err == nil && !finished {
		f.err = fmt.Errorf("the finisher stopped early: %v", werr)
	}
}

// start tells the finisher to begin.
func (f *finisher) start() error {
	_, err := io.WriteString(f.stdin, "go\n")
	return err
}

// wait blocks until the finisher has finished, and returns the commit
// times by batch.
func (f *finisher) wait(ctx context.Context) ([]int64, error) {
	select {
	case <-f.done:
		return f.commitAt, f.err
	case <-ctx.Done():
		f.close()
		return nil, ctx.Err()
	}
}

// close ends the finisher, if it still runs, and waits until it has.
// It is idempotent.
func (f *finisher) close() {
	_ = f.stdin.Close()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}
