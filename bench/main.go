// Command bench measures jobwatch end to end against a real PostgreSQL,
// side by side with what a user would otherwise write. It is a development
// tool, not part of the jobwatch command:
//
//	go run ./bench --help
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
	"time"

	"github.com/jobwatch/jobwatch/internal/dbconn"
)

// Exit statuses.
const (
	exitOK        = 0
	exitUsage     = 2 // bad usage
	exitOutput    = 1 // the report could not be written
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code, err := runBench(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		code = exitOK
	case err != nil:
		fmt.Fprintf(os.Stderr, "bench: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	}
	os.Exit(code)
}

// connFlags are the connection flags.
type connFlags struct {
	dsn, driver, prefix, schema string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "dsn", os.Getenv("DATABASE_URL"),
		"PostgreSQL connection string, URL or key=value (default $DATABASE_URL, else libpq's PG* variables)")
	fs.StringVar(&c.driver, "driver", "pgx", "database driver: pgx or pq")
	fs.StringVar(&c.prefix, "prefix", "", "prefix of the queue's object names")
	fs.StringVar(&c.schema, "schema", "", "schema of the queue's objects (default: the search_path)")
}

type queue = dbconn.Queue

// open connects a pool of at most maxConns connections (0: the driver's
// default). Bad flags are usage errors, an unreachable database a dbError.
func (c connFlags) openDB(ctx context.Context, maxConns int) (*dbconn.DB, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: c.dsn, Driver: c.driver, Prefix: c.prefix, Schema: c.schema, MaxConns: maxConns})
	var bad *dbconn.ConfigError
	var ce *dbconn.ConnectError
	switch {
	case errors.As(err, &bad):
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	case errors.As(err, &ce):
		return nil, &dbError{err}
	}
	return db, err
}

func (c connFlags) open(ctx context.Context) (queue, func(), error) {
	db, err := c.openDB(ctx, 0)
	if err != nil {
		return nil, nil, err
	}
	return db.Queue, db.Close, nil
}

func (c connFlags) redact(err error) error { return dbconn.Redactor(c.dsn).Error(err) }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseArgsOnly(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func exitFor(err error) int {
	var db *dbError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.As(err, &db):
		return exitDB
	case errors.Is(err, context.Canceled):
		return exitInterrupt
	}
	return exitDB
}
