package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/jobwatch/jobwatch/internal/redact"
)

// errUsage marks errors caused by bad command-line input.
var errUsage = errors.New("usage")

// app is one run of the command: where it reads and writes, and what the
// chosen subcommand reported.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	redactor       redact.Redactor // masks the passwords of the arguments and environment
	code           int             // the exit status a subcommand chose
	shown          *ffcli.Command  // the command whose usage the flag package asked for
}

// run parses args, runs the chosen command and returns its exit status.
// Errors are printed as one line on stderr, with every password that the
// arguments or the environment hold masked; a usage error adds a hint to
// run --help.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, redactor: secrets(args)}
	root := a.root()
	err := flagError(root.Parse(args))
	if err == nil {
		err = root.Run(ctx)
	}
	if err == nil {
		return a.code
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usageText(a.shownOr(root)))
		return exitOK
	}
	name := commandName(a.shownOr(root))
	msg := strings.TrimPrefix(oneLine(err), errUsage.Error()+": ")
	msg = strings.TrimPrefix(msg, "jobwatch: ") // a library error's own prefix
	fmt.Fprintf(stderr, "%s: %s\n", name, a.redactor.String(msg))
	code := a.code
	if code == exitOK {
		code = exitFor(err) // the error of parsing, before any command ran
	}
	if code != exitUsage {
		return code
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
	return exitUsage
}

func (a *app) shownOr(c *ffcli.Command) *ffcli.Command {
	if a.shown != nil {
		return a.shown
	}
	return c
}

// command makes a subcommand whose flags are registered by flags and
// whose work is exec, which returns the exit status.
func (a *app) command(name, args, summary, long string, flags func(*flag.FlagSet),
	exec func(ctx context.Context, fs *flag.FlagSet, args []string) (int, error)) *ffcli.Command {
	fs := newFlagSet("jobwatch " + name)
	flags(fs)
	c := &ffcli.Command{
		Name:       name,
		ShortUsage: "jobwatch " + name + " " + args,
		ShortHelp:  summary,
		LongHelp:   long,
		FlagSet:    fs,
		UsageFunc:  a.usage,
	}
	c.Exec = func(ctx context.Context, rest []string) error {
		a.shown = c
		pos, err := interspersed(fs, rest)
		if err != nil {
			return flagError(err)
		}
		a.code, err = exec(ctx, fs, pos)
		return err
	}
	return c
}

// usage records which command's usage the flag package asked for (on
// --help and on a bad flag); run prints it, on standard output, for --help
// only.
func (a *app) usage(c *ffcli.Command) string {
	a.shown = c
	return ""
}

func (a *app) root() *ffcli.Command {
	root := &ffcli.Command{
		Name:       "jobwatch",
		ShortUsage: "jobwatch <command> [flags] [arguments]",
		LongHelp:   "Waits for jobs in a PgQueuer-compatible PostgreSQL queue to reach their final status.",
		FlagSet:    newFlagSet("jobwatch"),
		UsageFunc:  a.usage,
	}
	root.Subcommands = []*ffcli.Command{
		a.waitCommand(), a.statusCommand(), a.installCommand(), a.uninstallCommand(),
		a.enqueueCommand(), a.demoCommand(), a.versionCommand(),
	}
	root.Subcommands = append(root.Subcommands, a.helpCommand(root))
	root.Exec = func(ctx context.Context, args []string) error {
		a.shown = root
		if len(args) == 0 {
			return fmt.Errorf("%w: no command given", errUsage)
		}
		return fmt.Errorf("%w: unknown command %q", errUsage, truncate(args[0]))
	}
	return root
}

// helpCommand is `jobwatch help [command]`: the usage of the command, or
// of jobwatch, on standard output.
func (a *app) helpCommand(root *ffcli.Command) *ffcli.Command {
	return a.command("help", "[command]", "show the usage of jobwatch or of a command", "",
		func(*flag.FlagSet) {},
		func(_ context.Context, _ *flag.FlagSet, args []string) (int, error) {
			c := root
			if len(args) > 0 {
				c = findCommand(root, args[0])
				if c == nil {
					a.shown = root
					return exitUsage, fmt.Errorf("%w: unknown command %q", errUsage, truncate(args[0]))
				}
			}
			fmt.Fprint(a.stdout, usageText(c))
			return exitOK, nil
		})
}

func findCommand(root *ffcli.Command, name string) *ffcli.Command {
	for _, c := range root.Subcommands {
		if strings.EqualFold(c.Name, name) {
			return c
		}
	}
	return nil
}

func commandName(c *ffcli.Command) string {
	if c.Name == "jobwatch" {
		return "jobwatch"
	}
	return "jobwatch " + c.Name
}

// newFlagSet returns a flag set that prints nothing itself: run prints
// errors as one line, and usage only when asked for.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// oneLine keeps an error message on one line: a driver's multi-line detail
// must not spill into output that scripts read.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// secrets masks the passwords that the command line and the environment
// may hold, in every spelling: $DATABASE_URL's, $PGPASSWORD, and any DSN
// among the arguments, whichever flag (or none) it was given to.
func secrets(args []string) redact.Redactor {
	r := redact.New(os.Getenv("PGPASSWORD"))
	r.Add(redact.Secrets(os.Getenv("DATABASE_URL"))...)
	for _, arg := range args {
		r.Add(redact.Secrets(arg)...)
	}
	return r
}
