package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jobwatch/jobwatch/internal/dbconn"
)

// dbError marks an error of the database or its driver (exit status 5).
type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// connFlags are the connection flags every database command takes.
type connFlags struct {
	dsn, driver, prefix, schema string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "dsn", os.Getenv("DATABASE_URL"),
		"PostgreSQL connection string, URL or key=value (default $DATABASE_URL, else libpq's PG* variables)")
	fs.StringVar(&c.driver, "driver", "pgx", "database driver: pgx or pq")
	fs.StringVar(&c.prefix, "prefix", os.Getenv("PGQUEUER_PREFIX"), "prefix of the queue's object names (default $PGQUEUER_PREFIX)")
	fs.StringVar(&c.schema, "schema", "", "schema of the queue's objects (default: the search_path)")
}

// queue is what the commands need of a PostgreSQL backend.
type queue = dbconn.Queue

// open connects to the database, checks that it answers, and returns the
// backend and a function that releases it. Bad flags are usage errors; a
// database that does not answer is a dbError. No error holds the password.
func (c connFlags) open(ctx context.Context) (queue, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: c.dsn, Driver: c.driver, Prefix: c.prefix, Schema: c.schema})
	var bad *dbconn.ConfigError
	var ce *dbconn.ConnectError
	switch {
	case errors.As(err, &bad):
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	case errors.As(err, &ce):
		return nil, nil, &dbError{err}
	case err != nil:
		return nil, nil, err
	}
	return db.Queue, db.Close, nil
}

// redact removes the DSN's password from err's message, in every spelling
// it may take there, keeping err's chain for errors.Is.
func (c connFlags) redact(err error) error { return dbconn.Redactor(c.dsn).Error(err) }

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
