package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3/ffcli"
)

const installHelp = `Creates the PgQueuer-compatible objects, upgrades an earlier jobwatch
installation to them and lists each change it made, or says it changed
nothing. With --check it changes nothing: exit 0 when installed, 1 when not.`

func (a *app) installCommand() *ffcli.Command {
	var conn connFlags
	var check bool
	return a.command("install", "[flags]", "create the PgQueuer-compatible tables (or --check for them)", installHelp,
		func(fs *flag.FlagSet) {
			conn.register(fs)
			fs.BoolVar(&check, "check", false, "only report: exit 0 when installed, 1 when not")
		},
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if err := noArgs(args); err != nil {
				return exitUsage, err
			}
			q, closeDB, err := conn.open(ctx)
			if err != nil {
				return exitFor(err), err
			}
			defer closeDB()
			if check {
				return a.installed(ctx, &conn, q)
			}
			return a.install(ctx, &conn, q)
		})
}

func (a *app) installed(ctx context.Context, conn *connFlags, q queue) (int, error) {
	ok, err := q.Installed(ctx)
	switch {
	case err != nil:
		return exitDB, conn.redact(&dbError{err})
	case !ok:
		fmt.Fprintln(a.stdout, "not installed")
		return exitUnsettled, nil
	}
	fmt.Fprintln(a.stdout, "installed")
	return exitOK, nil
}

func (a *app) install(ctx context.Context, conn *connFlags, q queue) (int, error) {
	res, err := q.Install(ctx)
	if err != nil {
		return exitDB, conn.redact(&dbError{err})
	}
	switch {
	case res.Created:
		fmt.Fprintln(a.stdout, "installed")
	case len(res.Changes) > 0:
		fmt.Fprintln(a.stdout, "upgraded to PgQueuer's schema:")
		for _, c := range res.Changes {
			fmt.Fprintln(a.stdout, "  "+c)
		}
	default:
		fmt.Fprintln(a.stdout, "already installed; nothing changed")
	}
	return exitOK, nil
}

const uninstallHelp = `Drops the queue's objects and every job in them. It refuses without --yes,
and says so (exit 1) when the queue is not installed.`

func (a *app) uninstallCommand() *ffcli.Command {
	var conn connFlags
	var yes bool
	return a.command("uninstall", "--yes [flags]", "drop the queue's tables (needs --yes)", uninstallHelp,
		func(fs *flag.FlagSet) {
			conn.register(fs)
			fs.BoolVar(&yes, "yes", false, "really drop the queue's tables and every job in them")
		},
		func(ctx context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if err := noArgs(args); err != nil {
				return exitUsage, err
			}
			if !yes {
				return exitUsage, fmt.Errorf("%w: this drops every job; run again with --yes", errUsage)
			}
			q, closeDB, err := conn.open(ctx)
			if err != nil {
				return exitFor(err), err
			}
			defer closeDB()
			return a.uninstall(ctx, &conn, q)
		})
}

func (a *app) uninstall(ctx context.Context, conn *connFlags, q queue) (int, error) {
	ok, err := q.Installed(ctx)
	switch {
	case err != nil:
		return exitDB, conn.redact(&dbError{err})
	case !ok:
		return exitUnsettled, fmt.Errorf("%w; nothing to uninstall", conn.notInstalled())
	}
	if err := q.Uninstall(ctx); err != nil {
		return exitDB, conn.redact(&dbError{err})
	}
	fmt.Fprintln(a.stdout, "uninstalled")
	return exitOK, nil
}

// noArgs refuses positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, truncate(args[0]))
	}
	return nil
}
