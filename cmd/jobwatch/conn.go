package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/dbconn"
)

// dbError marks an error of the database or its driver (exit status 5).
type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// errNoDSN is the error of a database command given no database at all.
var errNoDSN = fmt.Errorf("%w: no database given: pass --dsn postgres://user@host:5432/db, or set $DATABASE_URL (or libpq's $PGHOST and $PGDATABASE)", errUsage)

// connFlags are the connection flags every database command takes. The
// defaults taken from the environment ($DATABASE_URL, $PGQUEUER_PREFIX)
// are read when connecting, not when the flags are registered, so that no
// help text can show them.
type connFlags struct {
	fs                          *flag.FlagSet
	dsn, driver, prefix, schema string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	c.fs = fs
	fs.StringVar(&c.dsn, "dsn", "", "PostgreSQL connection `URL` or key=value string (default $DATABASE_URL, else libpq's PG* variables)")
	fs.StringVar(&c.driver, "driver", "pgx", "database `driver`: pgx or pq")
	fs.StringVar(&c.prefix, "prefix", "", "`prefix` of the queue's object names (default $PGQUEUER_PREFIX)")
	fs.StringVar(&c.schema, "schema", "", "`schema` of the queue's objects (default: the search_path)")
}

// resolve fills in the defaults from the environment, and refuses to go on
// with no database named anywhere.
func (c *connFlags) resolve() error {
	given := map[string]bool{}
	if c.fs != nil {
		c.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	}
	if !given["dsn"] {
		c.dsn = os.Getenv("DATABASE_URL")
	}
	if !given["prefix"] {
		c.prefix = os.Getenv("PGQUEUER_PREFIX")
	}
	if c.dsn == "" && os.Getenv("PGHOST") == "" && os.Getenv("PGDATABASE") == "" && os.Getenv("PGSERVICE") == "" {
		return errNoDSN
	}
	return nil
}

// queue is what the commands need of a PostgreSQL backend.
type queue = dbconn.Queue

// open connects to the database, checks that it answers, and returns the
// backend and a function that releases it. Bad flags are usage errors; a
// database that does not answer is a dbError. No error holds the password.
func (c *connFlags) open(ctx context.Context) (queue, func(), error) {
	if err := c.resolve(); err != nil {
		return nil, nil, err
	}
	return c.openDSN(ctx)
}

// openDSN is open with the flags as they are, the environment unread.
func (c *connFlags) openDSN(ctx context.Context) (queue, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: c.dsn, Driver: c.driver, Prefix: c.prefix, Schema: c.schema})
	var bad *dbconn.ConfigError
	var ce *dbconn.ConnectError
	switch {
	case errors.As(err, &bad):
		return nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	case errors.As(err, &ce):
		return nil, nil, &dbError{err}
	case err != nil:
		return nil, nil, err
	}
	return db.Queue, db.Close, nil
}

// openInstalled opens the queue and checks that it is installed: a queue
// that is not is a dbError matching jobwatch.ErrNotInstalled, naming the
// prefix and schema looked in.
func (c *connFlags) openInstalled(ctx context.Context) (queue, func(), error) {
	q, closeDB, err := c.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := c.checkInstalled(ctx, q); err != nil {
		closeDB()
		return nil, nil, err
	}
	return q, closeDB, nil
}

func (c *connFlags) checkInstalled(ctx context.Context, q queue) error {
	ok, err := q.Installed(ctx)
	switch {
	case err != nil:
		return c.redact(&dbError{err})
	case !ok:
		return &dbError{c.notInstalled()}
	}
	return nil
}

func (c *connFlags) notInstalled() error {
	return &jobwatch.NotInstalledError{Prefix: c.prefix, Schema: c.schema}
}

// redact removes the DSN's password from err's message, in every spelling
// it may take there, keeping err's chain for errors.Is.
func (c *connFlags) redact(err error) error { return dbconn.Redactor(c.dsn).Error(err) }

// redactText removes the DSN's password from s.
func (c *connFlags) redactText(s string) string { return dbconn.Redactor(c.dsn).String(s) }

// exitFor maps an error to the exit status the commands document.
func exitFor(err error) int {
	var db *dbError
	var out *outputError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.As(err, &db):
		return exitDB
	case errors.As(err, &out):
		return exitUnsettled
	case errors.Is(err, context.Canceled):
		return exitInterrupt
	}
	return exitDB
}
