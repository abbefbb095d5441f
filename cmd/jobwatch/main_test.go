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
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDemo(t *testing.T) {
	code, out, errOut := runCLI(t, "demo", "--jobs", "60", "--workers", "3", "--fail-rate", "0.3")
	if code != exitOK {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	for _, want := range []string{"enqueued 60 jobs", "all jobs settled", "successful", "exception", "watcher:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("no terminal, yet stderr got %q", errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "Usage"},
		{[]string{"nope"}, exitUsage, "unknown command"},
		{[]string{"demo", "--jobs", "0"}, exitUsage, "--jobs"},
		{[]string{"demo", "--jobs", "x"}, exitUsage, "invalid value"},
		{[]string{"demo", "--workers", "0"}, exitUsage, "--workers"},
		{[]string{"demo", "--fail-rate", "1.5"}, exitUsage, "--fail-rate"},
		{[]string{"demo", "--fail-rate", "NaN"}, exitUsage, "--fail-rate"},
		{[]string{"demo", "extra"}, exitUsage, "unexpected argument"},
		{[]string{"demo", "--help"}, exitOK, "-jobs"},
		{[]string{"help"}, exitOK, "demo"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tt.code, errOut, tt.msg)
			}
		})
	}
}
