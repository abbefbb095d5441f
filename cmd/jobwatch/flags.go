package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// interspersed parses the flags that follow positional arguments too
// (`wait 5 --json`), which the flag package leaves alone, and returns the
// positional arguments. "-" is an argument, and "--" ends the flags.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		switch a := args[0]; {
		case a == "--":
			return append(pos, args[1:]...), nil
		case a == "-" || !strings.HasPrefix(a, "-"):
			pos = append(pos, a)
			args = args[1:]
		default:
			if err := fs.Parse(args); err != nil {
				return nil, err
			}
			args = fs.Args()
		}
	}
	return pos, nil
}

// flagError makes a parse error of ff or the flag package a usage error
// with the flag package's own message ("flag provided but not defined:
// -x"), without ff's prefix. flag.ErrHelp stays itself.
func flagError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error()
	}
	return fmt.Errorf("%w: %s", errUsage, msg)
}

// durationValue is a time.Duration flag whose errors say what is wrong:
// a missing unit, most often.
type durationValue struct{ d *time.Duration }

func durationFlag(fs *flag.FlagSet, d *time.Duration, name string, def time.Duration, usage string) {
	*d = def
	fs.Var(durationValue{d}, name, usage)
}

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && strings.Contains(err.Error(), "missing unit"):
		return errors.New("missing unit, for example 5s")
	case err != nil:
		return errors.New("not a duration, for example 30s, 1m30s or 500ms")
	}
	*v.d = d
	return nil
}
