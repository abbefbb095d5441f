package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// checkDist fails unless d is a sane distribution of n positive samples.
func checkDist(t *testing.T, what string, d dist, n int) {
	t.Helper()
	if d.N != n {
		t.Errorf("%s: %d samples, want %d", what, d.N, n)
	}
	if !(d.Min >= 0 && d.Min <= d.P50 && d.P50 <= d.P90 && d.P90 <= d.P99 && d.P99 <= d.Max && d.Max > 0) {
		t.Errorf("%s: percentiles out of order or not positive: %+v", what, d)
	}
}

// objectsLeft counts the relations and types whose names start with prefix.
func objectsLeft(t *testing.T, prefix string) int {
	t.Helper()
	conn := pgtest.Connect(t)
	var n int
	err := conn.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM pg_class WHERE left(relname, length($1)) = $1)
		      + (SELECT count(*) FROM pg_type WHERE left(typname, length($1)) = $1)`, prefix).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBenchQuickJSONAndSVG(t *testing.T) {
	pgtest.Connect(t) // fails clearly when the database is down
	svgPath := filepath.Join(t.TempDir(), "bench.svg")
	start := time.Now()
	r := cli{t: t}.run("--quick", "--json", "--svg", svgPath, "--dsn", pgtest.DSN())
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	t.Logf("bench --quick took %s", time.Since(start).Round(time.Millisecond))

	// Exactly one JSON document, with every section.
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var sections map[string]json.RawMessage
	if err := dec.Decode(&sections); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Errorf("stdout holds more than one JSON document")
	}
	for _, key := range []string{"machine", "config", "change_feed", "floor", "latency", "scale", "wait_all_finished", "memory", "bar", "notes", "elapsed_s"} {
		if _, ok := sections[key]; !ok {
			t.Errorf("JSON lacks %q", key)
		}
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}

	if rep.Machine.CPUs < 1 || rep.Machine.Go == "" || !strings.Contains(rep.Machine.PostgreSQL, "PostgreSQL") {
		t.Errorf("machine: %+v", rep.Machine)
	}
	if !rep.Config.Quick || !slices.Equal(rep.Config.Sizes, []int{100, 1000}) || !strings.HasPrefix(rep.Config.Prefix, "jobwatch_bench_") {
		t.Errorf("config: %+v", rep.Config)
	}
	if rep.ChangeFeed.Note == "" {
		t.Errorf("change feed: %+v", rep.ChangeFeed)
	}

	checkDist(t, "notify round trip", rep.Floor.NotifyRoundTrip, rep.Config.FloorSamples)
	checkDist(t, "status read", rep.Floor.StatusRead, rep.Config.FloorSamples)
	if want := rep.Floor.NotifyRoundTrip.P50 + rep.Floor.StatusRead.P50; rep.Floor.FloorMS != want {
		t.Errorf("floor %v, want the sum of the medians %v", rep.Floor.FloorMS, want)
	}

	if len(rep.Latency) != 6 {
		t.Fatalf("%d latency rows, want 6 (feed and no feed at two debounces, feed forced at debounce 0, baseline)", len(rep.Latency))
	}
	var d0, d50 []float64
	for _, l := range rep.Latency {
		checkDist(t, "latency "+l.Series, l.Latency, rep.Config.Samples)
		switch {
		case l.Series == seriesBaseline:
			if l.DebounceMS != rep.Config.PollIntervalMS {
				t.Errorf("baseline row: %+v", l)
			}
		case l.DebounceMS == 0:
			d0 = append(d0, l.Latency.P50)
		case l.DebounceMS == rep.Config.DefaultDebounceMS:
			d50 = append(d50, l.Latency.P50)
			// The debounce holds the read back: the median cannot be far below it.
			if l.Latency.P50 < l.DebounceMS/2 {
				t.Errorf("%s with debounce %vms: p50 %vms", l.Series, l.DebounceMS, l.Latency.P50)
			}
		}
	}
	var rawLatency []map[string]any
	if err := json.Unmarshal(sections["latency"], &rawLatency); err != nil {
		t.Fatal(err)
	}
	for _, l := range rawLatency {
		reads, ok := l["reads_per_sample"].(float64)
		if jobwatchRow := l["series"] != seriesBaseline; jobwatchRow != ok || (ok && reads < 1) {
			t.Errorf("latency row %v: reads_per_sample %v (a jobwatch wait needs a read after the commit; the baseline has none)", l["series"], l["reads_per_sample"])
		}
	}
	if len(d0) != 3 || len(d50) != 2 || max(d0[0], d0[1], d0[2]) >= min(d50[0], d50[1]) {
		t.Errorf("debounce 0 medians %v should be below debounce 50ms medians %v", d0, d50)
	}

	if len(rep.Scale) != 6 {
		t.Fatalf("%d scale rows, want 6", len(rep.Scale))
	}
	for _, s := range rep.Scale {
		what := s.Series + " at " + strconv.Itoa(s.Waiters)
		if s.Capped || s.Resolved != s.Waiters {
			t.Errorf("%s: resolved %d of %d (capped %v)", what, s.Resolved, s.Waiters, s.Capped)
		}
		if !(s.Seconds > 0 && s.ResolvedPerSec > 0 && s.Reads > 0 && s.DBCalls > 0 && s.DBMS > 0 && s.DBUSPerJob > 0) {
			t.Errorf("%s: not positive: %+v", what, s)
		}
		if s.IDsRead+s.ChangesRead == 0 {
			t.Errorf("%s: read neither ids nor changes", what)
		}
		checkDist(t, "scale latency "+what, s.Latency, s.Resolved)
	}

	if len(rep.WaitAll) != 3 {
		t.Fatalf("%d wait-all rows, want 3", len(rep.WaitAll))
	}
	for _, a := range rep.WaitAll {
		if a.Jobs != rep.Config.Finished || a.Resolved != a.Jobs || a.Capped || a.Seconds <= 0 || a.Reads == 0 {
			t.Errorf("wait-all %s: %+v", a.Series, a)
		}
	}

	if len(rep.Memory) != 6 {
		t.Fatalf("%d memory rows, want 6", len(rep.Memory))
	}
	for _, m := range rep.Memory {
		if m.Waiters == 1000 && !(m.BytesPerWaiter > 0 && m.BytesPerWaiter < 64<<10) {
			t.Errorf("memory %s at %d: %v B per waiter", m.Series, m.Waiters, m.BytesPerWaiter)
		}
	}

	if len(rep.Bar) != 4 {
		t.Errorf("%d bar criteria, want 4", len(rep.Bar))
	}
	for _, b := range rep.Bar {
		if b.Criterion == "" || b.Target == "" || b.Measured == "" {
			t.Errorf("bar entry incomplete: %+v", b)
		}
	}
	if len(rep.Notes) == 0 || !strings.Contains(strings.Join(rep.Notes, " "), "client-side") {
		t.Errorf("notes do not say how database time is measured: %q", rep.Notes)
	}

	doc, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	counts := parseSVG(t, doc)
	if counts["polyline"] != 6 {
		t.Errorf("chart has %d series lines, want 6 (3 series x 2 panels)", counts["polyline"])
	}
	for _, name := range []string{seriesFeed, seriesNoFeed, seriesBaseline} {
		if !strings.Contains(string(doc), name) {
			t.Errorf("chart does not label %q", name)
		}
	}

	for _, want := range []string{"floor:", "latency:", "scale 1000:", "wait-all:", "dropped the queue"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress on stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := objectsLeft(t, rep.Config.Prefix); n != 0 {
		t.Errorf("%d objects left under prefix %q", n, rep.Config.Prefix)
	}
}

func TestBenchInterruptCleansUp(t *testing.T) {
	pgtest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Enough samples that the run is still measuring when interrupted.
	cmd := exec.CommandContext(ctx, binary, "--quick", "--samples", "100000", "--dsn", pgtest.DSN())
	cmd.Env = filterEnv(os.Environ(), "DATABASE_URL=", "PGQUEUER_PREFIX=")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var prefix string
	var log strings.Builder
	prefixRE := regexp.MustCompile(`installing the queue under prefix "([^"]+)"`)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if m := prefixRE.FindStringSubmatch(line); m != nil {
			prefix = m[1]
		}
		if strings.Contains(line, "latency: ") {
			break // measuring now, with the queue installed
		}
	}
	if prefix == "" {
		t.Fatalf("no install line before measuring:\n%s", log.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupt {
		t.Errorf("interrupted bench: %v, want exit %d\n%s", err, exitInterrupt, log.String())
	}
	if !strings.Contains(log.String(), "dropped the queue") {
		t.Errorf("no cleanup reported:\n%s", log.String())
	}
	if n := objectsLeft(t, prefix); n != 0 {
		t.Errorf("%d objects left under prefix %q after Ctrl-C", n, prefix)
	}
}

func TestBenchUsageAndConnectionErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--sizes", "0"}, exitUsage, "-sizes"},
		{[]string{"--sizes", "10,x"}, exitUsage, "not a count"},
		{[]string{"--batch", "0"}, exitUsage, "--batch"},
		{[]string{"--poll-interval", "0s"}, exitUsage, "--poll-interval"},
		{[]string{"--driver", "nope"}, exitUsage, "--driver"},
		{[]string{"--svg", "/nonexistent-dir/x.svg"}, exitUsage, "--svg"},
		{[]string{"extra"}, exitUsage, "unexpected argument"},
		{[]string{"--help"}, exitOK, "-poll-interval"},
		// Nothing listens on port 1: a database error, quickly.
		{[]string{"--quick", "--dsn", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5"}, exitDB, "connect"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli{t: t}.run(tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.msg) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tt.code, r.stderr, tt.msg)
			}
			if strings.Contains(r.stderr, "s3cret") {
				t.Errorf("stderr shows the password: %q", r.stderr)
			}
		})
	}
}
