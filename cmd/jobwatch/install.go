package main

import (
	"context"
	"fmt"
	"io"
)

// runInstall creates the queue's objects, or with --check reports whether
// they exist (exit 0 installed, 1 not).
func runInstall(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var conn connFlags
	var check bool
	fs := newFlags("install", stderr)
	conn.register(fs)
	fs.BoolVar(&check, "check", false, "only report: exit 0 when installed, 1 when not")
	if err := parseArgsOnly(fs, args); err != nil {
		return exitUsage, err
	}
	q, closeDB, err := conn.open(ctx)
	if err != nil {
		return exitDB, err
	}
	defer closeDB()
	if check {
		ok, err := q.Installed(ctx)
		if err != nil {
			return exitDB, conn.redact(&dbError{err})
		}
		if !ok {
			fmt.Fprintln(stdout, "not installed")
			return exitUnsettled, nil
		}
		fmt.Fprintln(stdout, "installed")
		return exitOK, nil
	}
	res, err := q.Install(ctx)
	if err != nil {
		return exitDB, conn.redact(&dbError{err})
	}
	switch {
	case res.Created:
		fmt.Fprintln(stdout, "installed")
	case len(res.Changes) > 0:
		fmt.Fprintln(stdout, "upgraded to PgQueuer's schema:")
		for _, c := range res.Changes {
			fmt.Fprintln(stdout, "  "+c)
		}
	default:
		fmt.Fprintln(stdout, "already installed; nothing changed")
	}
	return exitOK, nil
}

// runUninstall drops the queue's objects and their data; it refuses without
// --yes.
func runUninstall(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var conn connFlags
	var yes bool
	fs := newFlags("uninstall", stderr)
	conn.register(fs)
	fs.BoolVar(&yes, "yes", false, "really drop the queue's tables and every job in them")
	if err := parseArgsOnly(fs, args); err != nil {
		return exitUsage, err
	}
	if !yes {
		return exitUsage, fmt.Errorf("%w: this drops every job; run again with --yes", errUsage)
	}
	q, closeDB, err := conn.open(ctx)
	if err != nil {
		return exitDB, err
	}
	defer closeDB()
	if err := q.Uninstall(ctx); err != nil {
		return exitDB, conn.redact(&dbError{err})
	}
	fmt.Fprintln(stdout, "uninstalled")
	return exitOK, nil
}
