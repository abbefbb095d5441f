package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// wait and status check the installation first: on a prefix that is not
// installed they exit 5 at once, naming the prefix and schema; uninstall
// says there is nothing to drop and exits 1.
func TestNotInstalled(t *testing.T) {
	pgtest.Connect(t)
	prefix := pgtest.UniqueName() + "_typo_"
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"wait", "1"}, exitDB, `jobwatch wait: queue not installed (prefix "` + prefix + `", the search_path)`},
		{[]string{"wait", "--timeout", "1h", "1", "2"}, exitDB, `jobwatch wait: queue not installed (prefix "` + prefix + `", the search_path)`},
		{[]string{"status", "1"}, exitDB, `jobwatch status: queue not installed (prefix "` + prefix + `", the search_path)`},
		{[]string{"status", "--schema", "nowhere", "1"}, exitDB, `jobwatch status: queue not installed (prefix "` + prefix + `", schema "nowhere")`},
		{[]string{"uninstall", "--yes"}, exitUnsettled, `jobwatch uninstall: queue not installed (prefix "` + prefix + `", the search_path); nothing to uninstall`},
	}
	for _, driver := range []string{"pgx", "pq"} {
		for _, tt := range tests {
			t.Run(driver+" "+strings.Join(tt.args, " "), func(t *testing.T) {
				start := time.Now()
				args := append([]string{tt.args[0], "--driver", driver, "--prefix", prefix}, tt.args[1:]...)
				r := cli{t: t, env: []string{"DATABASE_URL=" + pgtest.DSN()}}.run(args...)
				if r.code != tt.code || r.stdout != "" || strings.TrimSpace(r.stderr) != tt.msg {
					t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", r.code, tt.code, r.stdout, r.stderr, tt.msg)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("took %s: it waited", d)
				}
			})
		}
	}
}

// With no --dsn and no $DATABASE_URL, the error says so and how to give
// one; the demo runs in memory all the same.
func TestNoDatabaseGiven(t *testing.T) {
	for _, args := range [][]string{{"wait", "1"}, {"status", "1"}, {"install"}, {"uninstall", "--yes"}, {"enqueue", "--entrypoint", "e"}} {
		r := cli{t: t}.run(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "no database given: pass --dsn") || !strings.Contains(r.stderr, "$DATABASE_URL") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if r := (cli{t: t}).run("demo", "--jobs", "5"); r.code != exitOK || !strings.Contains(r.stdout, "queue: in memory") {
		t.Errorf("demo: %+v", r)
	}
}

// A queue dropped while a wait without --timeout runs ends the wait with
// exit status 5, and standard error says why; it does not hang.
func TestWaitQueueDroppedMeanwhile(t *testing.T) {
	for _, driver := range []string{"pgx", "pq"} {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver)
			ids := d.enqueue(1)
			done := make(chan result, 1)
			go func() { done <- d.cmd("", "wait", append([]string{"--refresh", "200ms"}, strIDs(ids...)...)...) }()
			listening(t, d.prefix)
			if r := d.cmd("", "uninstall", "--yes"); r.code != exitOK {
				t.Fatalf("uninstall: %+v", r)
			}
			select {
			case r := <-done:
				if r.code != exitDB || !strings.Contains(r.stderr, `queue not installed (prefix "`+d.prefix+`"`) {
					t.Errorf("%+v", r)
				}
			case <-time.After(45 * time.Second):
				t.Fatal("the wait did not end")
			}
		})
	}
}

// listening waits until a session LISTENs on the channel of prefix: the
// wait has passed its installation check and is watching. The server
// signals nothing for this, so pg_stat_activity is polled, within 30s.
func listening(t *testing.T, prefix string) {
	t.Helper()
	conn := pgtest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND strpos(query, $1) > 0`, prefix).Scan(&n); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if n > 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no session listens on the channel of prefix %q", prefix)
		}
	}
}
