package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// envRunMain makes the test binary run the bench's main: the tests run
// the program as a user would, without building it separately. (The
// finisher re-executes the running binary too: envFinisher.)
const envRunMain = "JOBWATCH_BENCH_TEST_MAIN"

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envFinisher) == "1":
		os.Exit(runFinisher(os.Stdin, os.Stdout))
	case os.Getenv(envRunMain) == "1":
		os.Args = append(os.Args[:1], strings.Fields(os.Getenv(envRunMain+"_ARGS"))...)
		main()
		return
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// benchCommand is the bench program with args (no spaces within one).
func benchCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(filterEnv(os.Environ(), "DATABASE_URL="), envRunMain+"=1", envRunMain+"_ARGS="+strings.Join(args, " "))
	return cmd
}

type result struct {
	code           int
	stdout, stderr string
}

// runProgram runs the bench program to its end.
func runProgram(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := benchCommand(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running the bench %v: %v", args, err)
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
