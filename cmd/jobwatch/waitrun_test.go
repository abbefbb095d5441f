package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// testWaitFlags are wait's flags with test timings: no progress bar, a
// fast poll, and health looked at every 10ms.
func testWaitFlags(timeout time.Duration) waitFlags {
	return waitFlags{timeout: timeout, refresh: 20 * time.Millisecond, grace: time.Minute, progress: "never",
		health: healthTiming{check: 10 * time.Millisecond, repeat: time.Hour}}
}

type waitResult struct {
	code           int
	err            error
	stdout, stderr string
	took           time.Duration
}

func runWait(t *testing.T, r *waitRun, b *fake.Backend, ids []jobwatch.JobID) waitResult {
	t.Helper()
	if r.redact == nil {
		r.redact = func(s string) string { return s }
	}
	var out, errb bytes.Buffer
	start := time.Now()
	code, err := r.run(t.Context(), b, ids, &out, &errb)
	return waitResult{code, err, out.String(), errb.String(), time.Since(start)}
}

func newFake(t *testing.T) *fake.Backend {
	b := fake.New()
	t.Cleanup(func() { b.Close() })
	return b
}

// At the timeout each unsettled job prints its last seen state; "pending"
// stays the second word.
func TestWaitTimeoutShowsLastState(t *testing.T) {
	b := newFake(t)
	ids, err := b.EnqueueN(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, step := range []struct {
		ev  statemachine.Event
		ids []jobwatch.JobID
	}{{statemachine.Claim, ids[1:4]}, {statemachine.Hold, ids[2:3]}, {statemachine.Complete, ids[3:4]}} {
		if err := b.Apply(ctx, step.ev, step.ids...); err != nil {
			t.Fatal(err)
		}
	}
	for _, asJSON := range []bool{false, true} {
		f := testWaitFlags(200 * time.Millisecond)
		f.json = asJSON
		res := runWait(t, &waitRun{f: f}, b, ids)
		want := []string{"%d successful", "%d pending queued", "%d pending picked", "%d pending failed"}
		if asJSON {
			want = []string{`{"id":%d,"status":"successful"}`, `{"id":%d,"status":"pending","last_state":"queued"}`,
				`{"id":%d,"status":"pending","last_state":"picked"}`, `{"id":%d,"status":"pending","last_state":"failed"}`}
		}
		order := []jobwatch.JobID{ids[3], ids[0], ids[1], ids[2]}
		var lines []string
		for i, w := range want {
			lines = append(lines, strings.Replace(w, "%d", strconv.FormatInt(int64(order[i]), 10), 1))
		}
		if got := strings.Join(lines, "\n") + "\n"; res.code != exitTimeout || res.err != nil || res.stdout != got {
			t.Errorf("json %v: exit %d, %v, stdout\n%s\nwant\n%s", asJSON, res.code, res.err, res.stdout, got)
		}
	}
}

// A database that cannot be read is said on standard error at once, and
// at the timeout the exit status is 5 with the reason, not 3.
func TestWaitUnreadableDatabase(t *testing.T) {
	readErr := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	tests := []struct {
		name    string
		timing  healthTiming
		minSaid int // "still waiting" lines, at least
	}{
		{"said once", healthTiming{check: 10 * time.Millisecond, repeat: time.Hour}, 1},
		{"said again at the repeat interval", healthTiming{check: 10 * time.Millisecond, repeat: 100 * time.Millisecond}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake(t)
			ids, err := b.EnqueueN(t.Context(), 2)
			if err != nil {
				t.Fatal(err)
			}
			b.FailReads(1_000_000, readErr)
			f := testWaitFlags(500 * time.Millisecond)
			f.health = tt.timing
			res := runWait(t, &waitRun{f: f}, b, ids)
			if res.code != exitDB || res.err == nil || !strings.Contains(res.err.Error(), "timed out after 500ms, and the database could not be read: ") ||
				!strings.Contains(res.err.Error(), "connection refused") {
				t.Errorf("exit %d, error %v; want 5 and why", res.code, res.err)
			}
			if want := strconv.FormatInt(int64(ids[0]), 10) + " pending unseen\n"; !strings.HasPrefix(res.stdout, want) {
				t.Errorf("stdout %q, want it to start with %q", res.stdout, want)
			}
			said := strings.Count(res.stderr, "jobwatch wait: still waiting; the database cannot be read: ")
			if said < tt.minSaid || (tt.minSaid == 1 && said != 1) || !strings.Contains(res.stderr, "connection refused") {
				t.Errorf("said %d times (want %d), stderr %q", said, tt.minSaid, res.stderr)
			}
		})
	}
}

// Reads that fail, then work again: said both times, and the wait ends as
// the jobs do.
func TestWaitDatabaseRecovers(t *testing.T) {
	b := newFake(t)
	ids, err := b.EnqueueN(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	b.FailReads(1_000_000, errors.New("connection refused"))
	go func() {
		time.Sleep(200 * time.Millisecond)
		b.FailReads(0, nil)
		time.Sleep(200 * time.Millisecond) // reads work again, and health sees it
		_ = b.Apply(context.Background(), statemachine.Claim, ids...)
		_ = b.Apply(context.Background(), statemachine.Complete, ids...)
	}()
	res := runWait(t, &waitRun{f: testWaitFlags(0)}, b, ids)
	if res.code != exitOK || res.err != nil {
		t.Errorf("exit %d, %v", res.code, res.err)
	}
	if !strings.Contains(res.stderr, "still waiting; the database cannot be read: fake: fetch statuses: connection refused\n") ||
		!strings.Contains(res.stderr, "jobwatch wait: the database can be read again\n") {
		t.Errorf("stderr %q", res.stderr)
	}
}

// With no timeout, a queue that turns out not to be installed ends the
// wait with exit status 5, whether the driver says so or a check does.
func TestWaitQueueNotInstalled(t *testing.T) {
	notInstalled := &jobwatch.NotInstalledError{Prefix: "typo_", Err: errors.New(`relation "typo_pgqueuer_log" does not exist`)}
	tests := []struct {
		name    string
		readErr error
		check   func(context.Context) error
	}{
		{"the driver says so", notInstalled, nil},
		{"the installation check says so", errors.New(`relation "typo_pgqueuer_log" does not exist`),
			func(context.Context) error { return &dbError{&jobwatch.NotInstalledError{Prefix: "typo_"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake(t)
			ids, err := b.EnqueueN(t.Context(), 2)
			if err != nil {
				t.Fatal(err)
			}
			b.FailReads(1_000_000, tt.readErr)
			res := runWait(t, &waitRun{f: testWaitFlags(0), checkInstalled: tt.check}, b, ids)
			if res.code != exitDB || !errors.Is(res.err, jobwatch.ErrNotInstalled) || !strings.Contains(res.err.Error(), `prefix "typo_"`) {
				t.Errorf("exit %d, error %v", res.code, res.err)
			}
			if res.took > 5*time.Second {
				t.Errorf("took %s", res.took)
			}
		})
	}
}
