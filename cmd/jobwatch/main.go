// Command jobwatch waits for jobs in a PgQueuer-compatible PostgreSQL queue
// to reach their final status, and demonstrates the library.
//
//	jobwatch demo [--jobs N] [--workers N] [--fail-rate F]
//
// Run `jobwatch help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

// Exit statuses shared by every command.
const (
	exitOK        = 0
	exitUnsettled = 1 // a job settled other than successful
	exitUsage     = 2 // bad usage or input
	exitTimeout   = 3 // the timeout hit before every job settled
	exitNotFound  = 4 // a job was never found
	exitDB        = 5 // the database is unreachable, or a driver error
	exitInterrupt = 130
)

// errUsage marks errors caused by bad command-line input.
var errUsage = errors.New("usage")

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error)
}

func commands() []command {
	return []command{
		{"wait", "wait until jobs settle, printing each as it does", runWait},
		{"status", "print jobs' current status without waiting", runStatus},
		{"install", "create the PgQueuer-compatible tables (or --check for them)", runInstall},
		{"uninstall", "drop the queue's tables (needs --yes)", runUninstall},
		{"enqueue", "enqueue jobs and print their ids", runEnqueue},
		{"demo", "watch a queue work through jobs (in memory unless --dsn)", runDemo},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		code, err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return code
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		}
		fmt.Fprintf(stderr, "jobwatch %s: %v\n", c.name, oneLine(err))
		return exitFor(err)
	}
	fmt.Fprintf(stderr, "jobwatch: unknown command %q (see jobwatch help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: jobwatch <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'jobwatch <command> --help' for a command's flags.")
}

// oneLine keeps an error message on one line: a driver's multi-line detail
// must not spill into output that scripts read.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("jobwatch "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, marking bad input as a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseArgsOnly parses flags and refuses positional arguments.
func parseArgsOnly(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, truncate(fs.Arg(0)))
	}
	return nil
}
