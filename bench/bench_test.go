package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch/internal/privatepg"
)

// runInProcess runs the bench with args in this process.
func runInProcess(t *testing.T, args ...string) (int, error, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := runBench(ctx, args, &out, &errb)
	return code, err, out.String(), errb.String()
}

func readReport(t *testing.T, path string) *report {
	t.Helper()
	r, err := readReportFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestQuickRun is the CI-sized smoke test: --quick on a private server,
// every output, and the figures' consistency.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	jsonPath, chartPath, docPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "c.svg"), filepath.Join(dir, "PERF.md")
	if err := os.WriteFile(docPath, []byte("# Perf\n\n"+docBegin+"\nold\n"+docEnd+"\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, err, stdout, stderr := runInProcess(t, "--quick", "--json", jsonPath, "--chart", chartPath, "--doc", docPath, "--bars", "bars.json")
	if code != exitOK || err != nil {
		t.Fatalf("exit %d, %v\nstderr:\n%s", code, err, stderr)
	}
	t.Logf("--quick took %s", time.Since(start).Round(time.Millisecond))
	r := readReport(t, jsonPath)

	if len(r.Scale) != 2*len(allSeries) || len(r.Idle) != len(allSeries) || len(r.Debounce0) != 2 || r.Floor == nil {
		t.Fatalf("rows: %d scale, %d idle, %d debounce-0, floor %v", len(r.Scale), len(r.Idle), len(r.Debounce0), r.Floor)
	}
	for _, row := range r.Scale {
		checkScaleRow(t, row)
	}
	for _, row := range r.Idle {
		if row.Resolved != 0 || row.StartupCost.Statements == 0 {
			t.Errorf("idle %s: %d resolved (nothing changed), %d start-up statements", row.Series, row.Resolved, row.StartupCost.Statements)
		}
		if row.Series == seriesPolling && row.IdleCost.Statements < int64(row.W) {
			t.Errorf("idle polling loop ran %d statements for %d jobs in %.0f s", row.IdleCost.Statements, row.W, row.IdleS)
		}
	}
	for _, row := range r.Debounce0 {
		// With debounce 0 a wait can return before the finisher hears
		// its own COMMIT back (latencies clamp at 0), so only the
		// largest must be above 0.
		if row.Latency.N != 20 || row.Latency.Max <= 0 || row.PerWait.Statements < 1 {
			t.Errorf("debounce 0 %s: %+v, %+v", row.Series, row.Latency, row.PerWait)
		}
	}
	if r.Floor.FloorMS <= 0 || r.Derived.D0MedianOverFloor == nil || r.Derived.DefaultP99MaxMS == nil || r.Derived.NoFeedOverDefault == nil {
		t.Errorf("derived: %+v", r.Derived)
	}
	if !r.Server.Private || r.Server.Settings["pg_stat_statements.track_planning"] != "on" {
		t.Errorf("server: %+v", r.Server)
	}

	for _, want := range []string{"#### The bar", "#### Waiting on W jobs", "#### Idle", "#### Debounce 0", "go run ./bench --quick"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(doc), "# Perf\n\n"+docBegin) || !strings.HasSuffix(string(doc), docEnd+"\n\nkept\n") ||
		strings.Contains(string(doc), "\nold\n") || !strings.Contains(string(doc), "(c.svg)") {
		t.Errorf("doc not spliced as expected:\n%s", doc)
	}
	svg, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{ XMLName xml.Name })); err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("chart is not SVG: %v", err)
	}
	// The JSON holds the whole report: rendered again, it gives the same Markdown.
	code, err, again, _ := runInProcess(t, "--from", jsonPath, "--bars", "bars.json", "--chart", chartPath)
	if code != exitOK || err != nil || again != stdout {
		t.Errorf("--from: exit %d, %v; Markdown differs from the run's: %v", code, err, again != stdout)
	}
	m := regexp.MustCompile(`private server: port \d+, directory (\S+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no private server in the log:\n%s", stderr)
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the private server's directory %s is still there: %v", m[1], err)
	}
}

// checkScaleRow checks one scale row's figures against each other, and
// that only the watcher's statements were counted.
func checkScaleRow(t *testing.T, row scaleRow) {
	t.Helper()
	name := string(row.Series) + " at " + count(row.W)
	if row.Resolved != row.W || row.Unresolved != 0 || row.Errors != 0 || row.Latency.N != row.W {
		t.Errorf("%s: %d resolved, %d unresolved, %d errors, %d latencies", name, row.Resolved, row.Unresolved, row.Errors, row.Latency.N)
	}
	if row.Cost.Statements <= row.StartupCost.Statements || row.Cost.ExecMS < row.StartupCost.ExecMS || row.PerJob.DBMS <= 0 {
		t.Errorf("%s: cost %+v, start-up %+v", name, row.Cost, row.StartupCost)
	}
	if row.Latency.P50 <= 0 || row.Latency.P99 < row.Latency.P50 || row.MemoryPerWaiterB <= 0 || row.ResolvedPerS <= 0 {
		t.Errorf("%s: latency %+v, memory %.0f, %.0f/s", name, row.Latency, row.MemoryPerWaiterB, row.ResolvedPerS)
	}
	var sum int64
	for _, s := range row.Cost.ByStatement {
		sum += s.Statements
		// The workers' writes run on the other role: never counted.
		if q := strings.ToUpper(s.Query); strings.Contains(q, "INSERT") || strings.Contains(q, "UPDATE") || strings.Contains(q, "DELETE") {
			t.Errorf("%s: a worker's statement was counted: %s", name, s.Query)
		}
	}
	if sum != row.Cost.Statements {
		t.Errorf("%s: statements by query sum to %d, total %d", name, sum, row.Cost.Statements)
	}
	if row.Series == seriesPolling && row.Cost.Statements < int64(row.W) {
		t.Errorf("%s: %d statements, fewer than one poll per job", name, row.Cost.Statements)
	}
	if row.Series != seriesPolling && (row.Watcher == nil || row.Watcher.Notifications == 0) {
		t.Errorf("%s: watcher stats %+v", name, row.Watcher)
	}
}

// startServer starts a private server for one test.
func startServer(t *testing.T, settings map[string]string) *privatepg.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := privatepg.Start(ctx, privatepg.Config{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestServerWithoutStatementsSaysWhatToSet(t *testing.T) {
	s := startServer(t, nil)
	code, err, _, _ := runInProcess(t, "--quick", "--dsn", s.DSN("postgres"))
	if code != exitDB || !errors.Is(err, errNoStatements) {
		t.Fatalf("exit %d, %v; want %d and pg_stat_statements missing", code, err, exitDB)
	}
	for _, want := range []string{"ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'", "restart the server", "leave out --dsn"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestExistingServer runs on a server the bench did not start (--dsn):
// it creates the extension, a schema and two roles there, and drops them.
func TestExistingServer(t *testing.T) {
	s := startServer(t, privateSettings)
	code, err, _, stderr := runInProcess(t, "--quick", "--dsn", s.DSN("postgres"), "--sizes", "100", "--series", "default,polling", "--idle", "0s", "--samples", "5", "--bars", "bars.json")
	if code != exitOK || err != nil {
		t.Fatalf("exit %d, %v\nstderr:\n%s", code, err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgxv5.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'jobwatch_bench_%')
		+ (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'jobwatch_bench_%')
		+ (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements')`).Scan(&left)
	if err != nil || left != 0 {
		t.Errorf("%d roles, schemas or extensions left behind (%v)\n%s", left, err, stderr)
	}
}

func TestInterruptCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := benchCommand(ctx, "--quick", "--spread", "60s")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var dir string
	dirRE := regexp.MustCompile(`private server: port \d+, directory (\S+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if m := dirRE.FindStringSubmatch(line); m != nil {
			dir = m[1]
		}
		if strings.Contains(line, "completing over") {
			break // the finisher is running, the watcher waiting
		}
	}
	if dir == "" {
		t.Fatalf("no private server before measuring:\n%s", log.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupt {
		t.Errorf("interrupted: %v, want exit %d\n%s", err, exitInterrupt, log.String())
	}
	if !strings.Contains(log.String(), "stopped the private server") {
		t.Errorf("no cleanup reported:\n%s", log.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the private server's directory %s is still there after Ctrl-C: %v", dir, err)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--sizes", "0"}, exitUsage, "-sizes"},
		{[]string{"--bars", "/nonexistent.json"}, exitUsage, "--bars"},
		{[]string{"--help"}, exitOK, "-spread"},
		// Nothing listens on port 1: a database error, quickly, without the password.
		{[]string{"--quick", "--dsn", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5"}, exitDB, "connect"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runProgram(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.msg) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tt.code, r.stderr, tt.msg)
			}
			if strings.Contains(r.stderr, "s3cret") {
				t.Errorf("stderr shows the password: %q", r.stderr)
			}
		})
	}
}

func TestFromRendersWithoutMeasuring(t *testing.T) {
	dir := t.TempDir()
	jsonPath, docPath, chartPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "doc.md"), filepath.Join(dir, "c.svg")
	f, err := os.Create(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := sampleReport().writeJSON(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(docPath, []byte(docBegin+"\n"+docEnd+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err, stdout, stderr := runInProcess(t, "--from", jsonPath, "--doc", docPath, "--chart", chartPath, "--bars", "bars.json")
	if code != exitOK || err != nil || strings.Contains(stderr, "server") {
		t.Fatalf("exit %d, %v\n%s", code, err, stderr)
	}
	doc, _ := os.ReadFile(docPath)
	if !strings.Contains(string(doc), "| 100k | polling loop |") || !strings.Contains(stdout, "| 100k | polling loop |") {
		t.Errorf("not rendered:\n%s", doc)
	}
	if fi, err := os.Stat(chartPath); err != nil || fi.Size() == 0 {
		t.Errorf("no chart: %v", err)
	}
	if err := os.WriteFile(jsonPath, []byte(`{"scale": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, err, _, _ := runInProcess(t, "--from", jsonPath); code != exitUsage || !errors.Is(err, errUsage) {
		t.Errorf("--from a file that is no report: exit %d, %v", code, err)
	}
}
