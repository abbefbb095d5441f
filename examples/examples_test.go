// Package examples_test builds every example and runs it as a user would,
// checking that it exits 0 and prints what its documentation promises. The
// examples that need PostgreSQL use the test database
// (JOBWATCH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); when it cannot
// be reached they fail, they never skip. Each example's own tests
// (unittest, thirdparty, service) run as part of go test ./examples/... as
// well.
package examples_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	buildTimeout = 5 * time.Minute // a cold build with -race compiles pgx and lib/pq
	runTimeout   = time.Minute
)

func TestExamples(t *testing.T) {
	tests := []struct {
		name string
		dir  string // under examples/
		// db: the example runs on PostgreSQL, given $DATABASE_URL, or
		// -dsn when dsnFlag is set.
		db, dsnFlag bool
		want        []string // each a regexp that must match a whole line of stdout
	}{
		{name: "pgx", dir: "pgx", db: true, want: onPostgres},
		{name: "pq", dir: "pq", db: true, want: onPostgres},
		{name: "unittest", dir: "unittest", want: []string{
			`order book: done \(job 1\)`,
			`order bad-card \(job 2\): order rejected: card declined`,
			`order lost-parcel \(job 3\): order still processing`,
		}},
		{name: "waitall", dir: "waitall", want: waitAll("in-memory")},
		{name: "waitall-postgres", dir: "waitall", db: true, dsnFlag: true, want: waitAll("PostgreSQL")},
		{name: "waitfirst", dir: "waitfirst", want: waitFirst("in-memory")},
		{name: "waitfirst-postgres", dir: "waitfirst", db: true, dsnFlag: true, want: waitFirst("PostgreSQL")},
		{name: "thirdparty", dir: "thirdparty", want: []string{"this example is .* run `go test ./examples/thirdparty`"}},
		{name: "service", dir: "service", want: service("in-memory")},
		{name: "service-postgres", dir: "service", db: true, dsnFlag: true, want: service("PostgreSQL")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.db {
				pgtest.Connect(t) // fails the test, clearly, when the database is down
			}
			var args []string
			if tc.dsnFlag {
				args = []string{"-dsn", pgtest.DSN()}
			}
			out := run(t, build(t, tc.dir), args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			for _, want := range tc.want {
				re := regexp.MustCompile("^" + want + "$")
				found := false
				for _, line := range lines {
					found = found || re.MatchString(line)
				}
				if !found {
					t.Errorf("no line of the output matches %q", want)
				}
			}
			if tc.db {
				checkUninstalled(t, out)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// onPostgres is what examples/pgx and examples/pq print.
var onPostgres = []string{
	`installed a queue under prefix jwex_\w+_`,
	`Wait: job 1 \(cat.png\) ended successful`,
	`WaitAll: job 1 \(cat.png\) ended successful`,
	`WaitAll: job 2 \(corrupt.png\) ended exception`,
	`Inspect: job 2 failed: corrupt.png: not a PNG file`,
	`WaitAll: job 3 \(dog.png\) ended successful`,
	`Wait: job 4 \(report\) still pending after 300ms; cancelling it`,
	`Wait: job 4 \(report\) ended canceled`,
	`watcher: \d+ notifications, \d+ status reads`,
	`uninstalled the queue under prefix jwex_\w+_`,
}

func waitAll(backend string) []string {
	return []string{
		`on (the )?` + backend + `.*`,
		`job 1 render_img +successful`,
		`job 2 render_img +exception`,
		`job 4 generate_pdf +successful`,
		`job 6 cleanup +canceled`,
		`all 6 jobs settled after \S+`,
	}
}

func waitFirst(backend string) []string {
	return []string{
		`on (the )?` + backend + `.*`,
		`racing 3 downloads: \[1 2 3\]`,
		// The shortest download wins, unless a loaded machine reorders them.
		`first to settle: job \d \(mirror-[a-z]+\) successful after \S+`,
		`in the end: \[(\d (successful|canceled) ?){3}\]`,
	}
}

func service(backend string) []string {
	return []string{
		`on (the )?` + backend + `.*`,
		`POST /thumbnails\?image=cat\.png: 200 \{"job":1,"state":"successful"\}`,
		`POST /thumbnails\?image=corrupt\.png: 422 \{"job":2,"state":"exception","error":"corrupt\.png: not a PNG file"\}`,
		`POST /thumbnails\?image=slow\.png&wait=100ms: 202 \{"job":3,"state":"(queued|picked)","error":"still running: see /jobs/3"\}`,
		`GET /jobs/2: 200 \{"job":2,"state":"exception","error":"corrupt\.png: not a PNG file"\} history: queued picked exception`,
		`GET /jobs/99: 404 \{"job":99,"error":"no such job"\}`,
	}
}

// build compiles examples/<dir> into a temporary directory, with the race
// detector when the tests run with it, and returns the binary's path.
func build(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), dir)
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, "./examples/"+dir)...)
	cmd.Dir = ".." // the module root, as in the examples' documentation
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/%s: %v\n%s", dir, err, out)
	}
	return bin
}

// run runs bin with $DATABASE_URL set to the test database, bounded by
// runTimeout, and returns its stdout; it fails the test unless bin exits 0.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+pgtest.DSN(),
		// A -race binary otherwise lingers a second at exit; the user's own
		// GORACE options come after, and win.
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	cmd.WaitDelay = 5 * time.Second // a killed example's pipes may stay open
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s ran in %s", filepath.Base(bin), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s %s: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, ctx.Err(), &stdout, &stderr)
	}
	return stdout.String()
}

var prefixRE = regexp.MustCompile(`under prefix (jwex_\w+_)`)

// checkUninstalled checks that an example on PostgreSQL dropped what it
// installed: no table, index, sequence, type or function under its prefix.
func checkUninstalled(t *testing.T, out string) {
	t.Helper()
	m := prefixRE.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("the output names no queue prefix")
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var left int
	err := pgtest.Connect(t).QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_class WHERE starts_with(relname, $1)) +
		(SELECT count(*) FROM pg_type WHERE starts_with(typname, $1)) +
		(SELECT count(*) FROM pg_proc WHERE starts_with(proname, $1))`, m[1]).Scan(&left)
	if err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d database objects under prefix %s are left after the example", left, m[1])
	}
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
