package main

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// usageText is every command's usage, in one format: the usage line, the
// command's help, its subcommands and its flags. Defaults are the flags'
// own; a default taken from the environment is named ($DATABASE_URL) in
// the flag's help, never shown.
func usageText(c *ffcli.Command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n", c.ShortUsage)
	if c.ShortHelp != "" {
		fmt.Fprintf(&b, "\n%s.\n", capitalise(c.ShortHelp))
	}
	if c.LongHelp != "" {
		fmt.Fprintf(&b, "\n%s\n", c.LongHelp)
	}
	if len(c.Subcommands) > 0 {
		b.WriteString("\nCommands:\n")
		tw := tabwriter.NewWriter(&b, 0, 2, 2, ' ', 0)
		for _, s := range c.Subcommands {
			fmt.Fprintf(tw, "  %s\t%s\n", s.Name, s.ShortHelp)
		}
		tw.Flush()
		b.WriteString("\nRun 'jobwatch <command> --help' for a command's flags.\n")
	}
	if c.FlagSet != nil && hasFlags(c.FlagSet) {
		b.WriteString("\nFlags:\n")
		tw := tabwriter.NewWriter(&b, 0, 2, 2, ' ', 0)
		c.FlagSet.VisitAll(func(f *flag.Flag) { fmt.Fprintf(tw, "  %s\t%s\n", flagSynopsis(f), flagHelp(f)) })
		tw.Flush()
	}
	return b.String()
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagSynopsis is `--name ARG`, or `--name` for a boolean flag (one dash
// for a one-letter name).
func flagSynopsis(f *flag.Flag) string {
	name := "--" + f.Name
	if len(f.Name) == 1 {
		name = "-" + f.Name
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return name
	}
	arg, _ := flag.UnquoteUsage(f)
	switch f.Value.(type) {
	case durationValue:
		arg = "D"
	}
	switch arg {
	case "int", "uint":
		arg = "n"
	case "float":
		arg = "x"
	case "string", "value":
		arg = "text"
	}
	return name + " " + strings.ToUpper(arg)
}

// flagHelp is the flag's help and, when it has one, its default.
func flagHelp(f *flag.Flag) string {
	_, help := flag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "false", "0", "0s":
		return help
	}
	return fmt.Sprintf("%s (default %s)", help, f.DefValue)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
