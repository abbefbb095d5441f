package main

import (
	"strings"
	"testing"
)

// No output of the command, in any situation that prints something before
// or instead of connecting, shows a password given in $DATABASE_URL or in
// --dsn: help texts, flag typos, parse errors, bad DSNs, on both drivers.
func TestNoPasswordInAnyOutput(t *testing.T) {
	const secret = "Pa55-w0rd"
	dsns := map[string]string{
		// Nobody listens on port 1: no case touches a real queue.
		"url":           "postgres://postgres:" + secret + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"url, bad port": "postgres://postgres:" + secret + "@127.0.0.1:notaport/test",
		"url, escape":   "postgres://postgres:" + secret + "%zz@127.0.0.1/test",
		"kv":            "host=127.0.0.1 port=1 password=" + secret + " dbname=test sslmode=disable connect_timeout=2",
		"kv, bad port":  "host=127.0.0.1 port=x password=" + secret,
		"kv, quote":     "host=127.0.0.1 password='" + secret,
	}
	var argLists [][]string
	for _, c := range (&app{}).root().Subcommands {
		argLists = append(argLists,
			[]string{c.Name, "--help"},
			[]string{c.Name, "--dns", "x"},        // a flag typo
			[]string{c.Name, "--timeout", "5"},    // a flag some commands lack, or a bad value
			[]string{c.Name, "--json=maybe", "1"}, // a bad boolean
			[]string{c.Name, "1"},                 // an id, or a stray argument
		)
	}
	argLists = append(argLists,
		[]string{"help"}, []string{"--help"}, []string{"help", "wait"}, []string{"nope"},
		[]string{"wait", "--timeout", "1s", "1"}, []string{"status", "1"},
		[]string{"install", "--check"}, []string{"uninstall", "--yes"},
		[]string{"enqueue", "--entrypoint", "e"}, []string{"wait", "abc"},
	)
	for name, dsn := range dsns {
		for _, driver := range []string{"pgx", "pq"} {
			for _, args := range argLists {
				check := func(how string, r result) {
					t.Helper()
					if strings.Contains(r.stdout+r.stderr, secret) {
						t.Errorf("%s, %s, %s, %v: password shown: stdout %q, stderr %q", name, driver, how, args, r.stdout, r.stderr)
					}
				}
				withDriver := append(append([]string{}, args...), "--driver", driver)
				check("$DATABASE_URL", cli{t: t, env: []string{"DATABASE_URL=" + dsn}}.run(withDriver...))
				check("--dsn", cli{t: t}.run(append(withDriver, "--dsn", dsn)...))
				check("--dsn=", cli{t: t}.run(append([]string{args[0], "--dsn=" + dsn}, withDriver[1:]...)...))
			}
		}
	}
}

// The help texts name the environment variables that give defaults, and
// never show their values.
func TestHelpNamesEnvironmentDefaults(t *testing.T) {
	env := []string{"DATABASE_URL=postgres://u:pw@db.example:5432/app", "PGQUEUER_PREFIX=myprefix_"}
	for _, c := range (&app{}).root().Subcommands {
		t.Run(c.Name, func(t *testing.T) {
			r := cli{t: t, env: env}.run(c.Name, "--help")
			if r.code != exitOK || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: jobwatch "+c.Name) {
				t.Errorf("%+v", r)
			}
			if strings.Contains(r.stdout, "db.example") || strings.Contains(r.stdout, "myprefix_") {
				t.Errorf("help shows a value from the environment:\n%s", r.stdout)
			}
			if c.FlagSet.Lookup("prefix") != nil && (!strings.Contains(r.stdout, "$DATABASE_URL") || !strings.Contains(r.stdout, "$PGQUEUER_PREFIX")) {
				t.Errorf("help does not name $DATABASE_URL and $PGQUEUER_PREFIX:\n%s", r.stdout)
			}
		})
	}
}
