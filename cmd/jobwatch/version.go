package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func (a *app) versionCommand() *ffcli.Command {
	return a.command("version", "", "print the version of jobwatch", "",
		func(*flag.FlagSet) {},
		func(_ context.Context, _ *flag.FlagSet, args []string) (int, error) {
			if len(args) > 0 {
				return exitUsage, fmt.Errorf("%w: unexpected argument %q", errUsage, truncate(args[0]))
			}
			fmt.Fprintln(a.stdout, "jobwatch", version())
			return exitOK, nil
		})
}

// version is the module's version from the build information: a release
// tag when installed with `go install ...@vX`, "(devel)" when built from a
// checkout, with the commit when the build recorded it.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && v == "(devel)" {
			v += " " + s.Value
		}
	}
	return v
}
