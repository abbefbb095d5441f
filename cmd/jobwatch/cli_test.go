package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

// binary is the jobwatch command built for these tests by TestMain.
var binary string

// cli runs the built binary with DATABASE_URL, PGQUEUER_PREFIX and
// libpq's PG* variables unset, and env added.
type cli struct {
	t     *testing.T
	stdin string
	env   []string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c cli) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(append(filterEnv(os.Environ(), "DATABASE_URL=", "PGQUEUER_PREFIX=", "PG"), "NO_COLOR=1"), c.env...)
	cmd.Stdin = strings.NewReader(c.stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		c.t.Fatalf("running jobwatch %v: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// db is one test's queue: a fresh prefix, installed through the binary.
type db struct {
	t      *testing.T
	flags  []string // --dsn, --prefix, --driver
	prefix string
	b      *jwpgx.Backend
}

func newDB(t *testing.T, driver string) *db {
	t.Helper()
	pgtest.Connect(t) // fails the test clearly when the database is down
	prefix := pgtest.UniqueName() + "_"
	d := &db{t: t, prefix: prefix, flags: []string{"--dsn", pgtest.DSN(), "--prefix", prefix, "--driver", driver}}
	if r := d.cmd("", "install"); r.code != 0 || !strings.Contains(r.stdout, "installed") {
		t.Fatalf("install: %+v", r)
	}
	t.Cleanup(func() { d.cmd("", "uninstall", "--yes") })
	pool, err := pgxpool.New(context.Background(), pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if d.b, err = jwpgx.New(pool, jwpgx.WithPrefix(prefix)); err != nil {
		t.Fatal(err)
	}
	return d
}

// cmd runs `jobwatch <sub> <db flags> args...`.
func (d *db) cmd(stdin, sub string, args ...string) result {
	d.t.Helper()
	return cli{t: d.t, stdin: stdin}.run(append(append([]string{sub}, d.flags...), args...)...)
}

func (d *db) enqueue(n int) []jobwatch.JobID {
	d.t.Helper()
	r := d.cmd("", "enqueue", "--entrypoint", "e", "--count", strconv.Itoa(n))
	if r.code != 0 {
		d.t.Fatalf("enqueue: %+v", r)
	}
	var ids []jobwatch.JobID
	for _, f := range strings.Fields(r.stdout) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			d.t.Fatalf("enqueue printed %q", r.stdout)
		}
		ids = append(ids, jobwatch.JobID(n))
	}
	return ids
}

func (d *db) apply(evs []statemachine.Event, ids ...jobwatch.JobID) {
	d.t.Helper()
	for _, ev := range evs {
		if err := d.b.Apply(context.Background(), ev, ids...); err != nil {
			d.t.Fatalf("%s: %v", ev, err)
		}
	}
}

func strIDs(ids ...jobwatch.JobID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(int64(id), 10)
	}
	return out
}

var (
	complete = []statemachine.Event{statemachine.Claim, statemachine.Complete}
	raise    = []statemachine.Event{statemachine.Claim, statemachine.Error}
)

func buildBinary() (string, func(), error) {
	dir, err := os.MkdirTemp("", "jobwatch-cli-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "jobwatch")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, errors.New(string(out))
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func TestInstallCheckUninstall(t *testing.T) {
	for _, driver := range []string{"pgx", "pq"} {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver)
			if r := d.cmd("", "install"); r.code != 0 || !strings.Contains(r.stdout, "already installed") {
				t.Errorf("second install: %+v", r)
			}
			if r := d.cmd("", "install", "--check"); r.code != 0 {
				t.Errorf("install --check: %+v", r)
			}
			// An installation made by an earlier jobwatch (one index under
			// its old name, one missing) is upgraded, and install says how.
			ctx := pgtest.Context(t)
			if _, err := pgtest.Connect(t).Exec(ctx, `ALTER INDEX "`+d.prefix+`pgqueuer_ep_ea_idx" RENAME TO "`+d.prefix+`pgqueuer_dequeue_after_idx";
				DROP INDEX "`+d.prefix+`pgqueuer_log_status"`); err != nil {
				t.Fatal(err)
			}
			want := "upgraded to PgQueuer's schema:\n" +
				"  renamed index " + d.prefix + "pgqueuer_dequeue_after_idx to " + d.prefix + "pgqueuer_ep_ea_idx\n" +
				"  created index " + d.prefix + "pgqueuer_log_status\n"
			if r := d.cmd("", "install"); r.code != 0 || r.stdout != want {
				t.Errorf("install over an earlier installation: %+v; want stdout\n%s", r, want)
			}
			if r := d.cmd("", "install"); r.code != 0 || !strings.Contains(r.stdout, "already installed") {
				t.Errorf("install after the upgrade: %+v", r)
			}
			if r := d.cmd("", "uninstall"); r.code != exitUsage || !strings.Contains(r.stderr, "--yes") {
				t.Errorf("uninstall without --yes: %+v", r)
			}
			if r := d.cmd("", "uninstall", "--yes"); r.code != 0 {
				t.Errorf("uninstall: %+v", r)
			}
			if r := d.cmd("", "install", "--check"); r.code != 1 || !strings.Contains(r.stdout, "not installed") {
				t.Errorf("install --check after uninstall: %+v", r)
			}
		})
	}
}

func TestWaitExitStatuses(t *testing.T) {
	d := newDB(t, "pgx")
	ids := d.enqueue(4)
	d.apply(complete, ids[0], ids[1])
	d.apply(raise, ids[2])
	tests := []struct {
		name  string
		args  []string
		code  int
		lines []string
	}{
		{"all successful", strIDs(ids[0], ids[1]), exitOK,
			[]string{strIDs(ids[0])[0] + " successful", strIDs(ids[1])[0] + " successful"}},
		{"one exception", strIDs(ids[0], ids[2]), exitUnsettled,
			[]string{strIDs(ids[2])[0] + " exception"}},
		{"not found", append([]string{"--not-found-grace", "100ms"}, strIDs(ids[0], 987654321)...), exitNotFound,
			[]string{"987654321 not_found", strIDs(ids[0])[0] + " successful"}},
		{"timeout", append([]string{"--timeout", "300ms"}, strIDs(ids[3], ids[2])...), exitTimeout,
			[]string{strIDs(ids[3])[0] + " pending queued", strIDs(ids[2])[0] + " exception"}},
		{"timeout beats not found", append([]string{"--timeout", "300ms", "--not-found-grace", "1ms"}, strIDs(ids[3], 987654321)...), exitTimeout,
			[]string{strIDs(ids[3])[0] + " pending queued", "987654321 not_found"}},
		{"flags after ids", append(strIDs(ids[0]), "--json", "--timeout", "10s"), exitOK,
			[]string{`{"id":` + strIDs(ids[0])[0] + `,"status":"successful"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.cmd("", "wait", tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d: %+v", r.code, tt.code, r)
			}
			for _, l := range tt.lines {
				if !strings.Contains(r.stdout, l+"\n") {
					t.Errorf("stdout lacks %q:\n%s", l, r.stdout)
				}
			}
		})
	}
}

// A job that finishes while the command waits is printed when it does.
func TestWaitForRunningJobs(t *testing.T) {
	for _, driver := range []string{"pgx", "pq"} {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver)
			ids := d.enqueue(3)
			done := make(chan result, 1)
			go func() { done <- d.cmd("", "wait", append([]string{"--timeout", "30s"}, strIDs(ids...)...)...) }()
			d.apply(complete, ids...)
			r := <-done
			if r.code != exitOK || strings.Count(r.stdout, "successful") != 3 {
				t.Errorf("%+v", r)
			}
		})
	}
}

func TestWaitReadsStdinAndPrintsJSON(t *testing.T) {
	d := newDB(t, "pgx")
	ids := d.enqueue(3)
	d.apply(complete, ids...)
	stdin := strings.Join(strIDs(ids[0], ids[1]), "  \n\t") + "\n" + strIDs(ids[2])[0] + " " + strIDs(ids[0])[0]
	for _, args := range [][]string{{"--json"}, {"--json", "-"}} {
		r := d.cmd(stdin, "wait", args...)
		if r.code != exitOK {
			t.Fatalf("%v: %+v", args, r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 {
			t.Fatalf("%v: want 3 lines (duplicates once), got %q", args, r.stdout)
		}
		seen := map[int64]bool{}
		for _, l := range lines {
			var v struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil || v.Status != "successful" {
				t.Errorf("line %q: %+v %v", l, v, err)
			}
			seen[v.ID] = true
		}
		if len(seen) != 3 {
			t.Errorf("ids printed: %v", seen)
		}
	}
}

func TestStatus(t *testing.T) {
	d := newDB(t, "pq")
	ids := d.enqueue(2)
	d.apply([]statemachine.Event{statemachine.Claim}, ids[1])
	r := d.cmd("", "status", strIDs(ids[0], ids[1])...)
	want := strIDs(ids[0])[0] + " queued\n" + strIDs(ids[1])[0] + " picked\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("status: %+v, want %q", r, want)
	}
	r = d.cmd("", "status", "--json", "55555555")
	if r.code != exitNotFound || r.stdout != `{"id":55555555,"status":"unknown"}`+"\n" {
		t.Errorf("status of unknown: %+v", r)
	}
}

func TestProgressGoesToStderr(t *testing.T) {
	d := newDB(t, "pgx")
	ids := d.enqueue(2)
	d.apply(complete, ids...)
	r := d.cmd("", "wait", append([]string{"--progress", "always"}, strIDs(ids...)...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "2/2 settled") || strings.Contains(r.stdout, "settled") {
		t.Errorf("%+v", r)
	}
	r = d.cmd("", "wait", strIDs(ids...)...) // auto: not a terminal here
	if r.stderr != "" {
		t.Errorf("auto progress without a terminal wrote %q", r.stderr)
	}
}

func TestUnreachableDatabase(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, driver := range []string{"pgx", "pq"} {
		for _, dsn := range []string{
			"postgres://postgres:" + secret + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
			"host=127.0.0.1 port=1 user=postgres password=" + secret + " dbname=test sslmode=disable connect_timeout=2",
		} {
			r := cli{t: t}.run("status", "--driver", driver, "--dsn", dsn, "1")
			if r.code != exitDB {
				t.Errorf("%s: exit %d, want %d: %+v", driver, r.code, exitDB, r)
			}
			if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
				t.Errorf("%s: password leaked: %q", driver, r.stderr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.HasPrefix(r.stderr, "jobwatch status: ") {
				t.Errorf("%s: want one error line, got %q", driver, r.stderr)
			}
		}
	}
}

func TestBadUsage(t *testing.T) {
	tests := [][]string{
		{"wait", "--timeout", "-1s", "1"},
		{"wait", "--timeout", "soon", "1"},
		{"wait", "--progress", "sometimes", "1"},
		{"wait", "--refresh", "0s", "1"},
		{"wait", "abc"},
		{"wait", "0"},
		{"wait", "-5"},
		{"wait", "--dsn", pgtest.DSN(), "--driver", "mysql", "1"},
		{"wait", "--dsn", pgtest.DSN(), "--prefix", `x";drop`, "1"},
		{"wait", "1"}, // no database given
		{"status", "1.5"},
		{"enqueue"},
		{"enqueue", "--entrypoint", "e", "--count", "0"},
		{"enqueue", "--entrypoint", "e", "stray"},
		{"install", "--bogus"},
		{"uninstall"},
		{"nope"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := cli{t: t}.run(args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d: %+v", r.code, exitUsage, r)
			}
			if r.stderr == "" || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr %q", r.stderr)
			}
		})
	}
	r := cli{t: t, stdin: ""}.run("wait", "--dsn", pgtest.DSN())
	if r.code != exitUsage || !strings.Contains(r.stderr, "no job ids") {
		t.Errorf("wait with empty stdin: %+v", r)
	}
}

func TestDemoOnDatabase(t *testing.T) {
	pgtest.Connect(t)
	r := cli{t: t}.run("demo", "--dsn", pgtest.DSN(), "--jobs", "40", "--workers", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "all jobs settled") {
		t.Fatalf("%+v", r)
	}
	// It dropped its own tables (those of its prefix: other runs' demos
	// may be working meanwhile).
	m := regexp.MustCompile(`tables prefixed "(jobwatch_demo_[0-9a-f]+_)"`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("demo did not say its prefix: %q", r.stdout)
	}
	conn := pgtest.Connect(t)
	var n int
	if err := conn.QueryRow(context.Background(),
		`select count(*) from pg_class where starts_with(relname, $1)`, m[1]).Scan(&n); err != nil || n != 0 {
		t.Errorf("demo left %d relations behind (%v)", n, err)
	}
}
