package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	bin, cleanup, err := buildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building jobwatch:", err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDemo(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x") // the demo ignores it
	code, out, errOut := runCLI(t, "demo", "--jobs", "60", "--workers", "3", "--fail-rate", "0.3")
	if code != exitOK {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	for _, want := range []string{"queue: in memory", "enqueued 60 jobs", "all jobs settled", "successful", "exception", "watcher:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("no terminal, yet stderr got %q", errOut)
	}
}

// A usage error is one line naming the problem plus a hint to run --help;
// help goes to standard output.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // a part of it
		stderr string // a part of its first line
		hint   string // the second line
	}{
		{nil, exitUsage, "", "jobwatch: no command given", "Run 'jobwatch --help' for usage."},
		{[]string{"nope"}, exitUsage, "", `jobwatch: unknown command "nope"`, "Run 'jobwatch --help' for usage."},
		{[]string{"--bogus"}, exitUsage, "", "jobwatch: flag provided but not defined: -bogus", "Run 'jobwatch --help' for usage."},
		{[]string{"help", "nope"}, exitUsage, "", `jobwatch: unknown command "nope"`, "Run 'jobwatch --help' for usage."},
		{[]string{"demo", "--jobs", "0"}, exitUsage, "", "jobwatch demo: --jobs", "Run 'jobwatch demo --help' for usage."},
		{[]string{"demo", "--jobs", "x"}, exitUsage, "", "invalid value", "Run 'jobwatch demo --help' for usage."},
		{[]string{"demo", "--workers", "0"}, exitUsage, "", "--workers", "Run 'jobwatch demo --help' for usage."},
		{[]string{"demo", "--fail-rate", "1.5"}, exitUsage, "", "--fail-rate", "Run 'jobwatch demo --help' for usage."},
		{[]string{"demo", "--fail-rate", "NaN"}, exitUsage, "", "--fail-rate", "Run 'jobwatch demo --help' for usage."},
		{[]string{"demo", "extra"}, exitUsage, "", "unexpected argument", "Run 'jobwatch demo --help' for usage."},
		{[]string{"wait", "--timeout", "5", "1"}, exitUsage, "", `invalid value "5" for flag -timeout: missing unit, for example 5s`, "Run 'jobwatch wait --help' for usage."},
		{[]string{"wait", "1", "--timeout", "soon"}, exitUsage, "", "not a duration", "Run 'jobwatch wait --help' for usage."},
		{[]string{"enqueue", "--entrypoint", "e", "--delay", "10"}, exitUsage, "", "missing unit, for example 5s", "Run 'jobwatch enqueue --help' for usage."},
		{[]string{"version", "x"}, exitUsage, "", "unexpected argument", "Run 'jobwatch version --help' for usage."},
		{[]string{"demo", "--help"}, exitOK, "--jobs N", "", ""},
		{[]string{"help"}, exitOK, "demo", "", ""},
		{[]string{"--help"}, exitOK, "Commands:", "", ""},
		{[]string{"-h"}, exitOK, "Commands:", "", ""},
		{[]string{"help", "wait"}, exitOK, "Usage: jobwatch wait [flags] ID...", "", ""},
		{[]string{"wait", "5", "--help"}, exitOK, "Usage: jobwatch wait [flags] ID...", "", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) {
				t.Errorf("exit %d (want %d), stdout %q (want %q)", code, tt.code, out, tt.stdout)
			}
			if tt.stderr == "" {
				if errOut != "" {
					t.Errorf("stderr %q, want none", errOut)
				}
				return
			}
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], tt.stderr) || lines[1] != tt.hint {
				t.Errorf("stderr %q, want a line with %q and the hint %q", errOut, tt.stderr, tt.hint)
			}
			if out != "" {
				t.Errorf("stdout %q, want none", out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "version")
	// A test binary's build information has no module version; the
	// command prints what runtime/debug reports.
	if code != exitOK || !strings.HasPrefix(out, "jobwatch ") || strings.Count(out, "\n") != 1 || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if want := "jobwatch " + version() + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}
