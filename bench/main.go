// Command bench measures jobwatch end to end against a real PostgreSQL,
// side by side with what a user would otherwise write. It is a development
// tool, not part of the jobwatch command:
//
//	go run ./bench --help
//	go run ./bench --quick
//
// It counts every statement of the watcher's own database role with
// pg_stat_statements, while a separate process on another role finishes
// the jobs, and writes a Markdown report (docs/PERFORMANCE.md is
// regenerated from it with --doc), JSON on request and an SVG chart.
// It measures and reports; comparing a run with the bar is the
// separate check scripts/bench-check.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

// Exit statuses.
const (
	exitOK        = 0
	exitOutput    = 1 // the report could not be written
	exitUsage     = 2 // bad usage
	exitDB        = 5 // the database is unreachable, or a driver error
	exitInterrupt = 130
)

// errUsage marks errors caused by bad command-line input.
var errUsage = errors.New("usage")

// dbError marks an error of the database or its driver.
type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// outputError marks a failure to write the report.
type outputError struct{ err error }

func (e *outputError) Error() string { return e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

func main() {
	if os.Getenv(envFinisher) == "1" {
		os.Exit(runFinisher(os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code, err := runBench(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	}
	os.Exit(code)
}
