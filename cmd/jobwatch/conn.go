package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" database/sql driver

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/redact"
	"github.com/jobwatch/jobwatch/statemachine"
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

// queue is what the commands need of a PostgreSQL backend; backends/pgx and
// backends/pq both provide it.
type queue interface {
	jobwatch.Driver
	Install(ctx context.Context) (jwpgx.InstallResult, error)
	Uninstall(ctx context.Context) error
	Installed(ctx context.Context) (bool, error)
	Enqueue(ctx context.Context, jobs ...jwpgx.NewJob) ([]jobwatch.JobID, error)
	Claim(ctx context.Context, req jwpgx.ClaimRequest) ([]jwpgx.Job, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
}

// open connects to the database, checks that it answers, and returns the
// backend and a function that releases it. Bad flags are usage errors; a
// database that does not answer is a dbError. No error holds the password.
func (c connFlags) open(ctx context.Context) (queue, func(), error) {
	q, closeFn, err := c.connect(ctx)
	if err != nil {
		return nil, nil, c.redact(err)
	}
	return q, closeFn, nil
}

func (c connFlags) connect(ctx context.Context) (queue, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch c.driver {
	case "pgx":
		return c.openPgx(ctx)
	case "pq":
		return c.openPq(ctx)
	}
	return nil, nil, fmt.Errorf("%w: --driver must be pgx or pq, not %q", errUsage, c.driver)
}

func (c connFlags) openPgx(ctx context.Context) (queue, func(), error) {
	cfg, err := pgxpool.ParseConfig(c.dsn)
	if err != nil {
		// Not the parser's message: it may quote the DSN, password and all.
		return nil, nil, fmt.Errorf("%w: --dsn is not a valid connection string (a postgres:// URL or key=value pairs)", errUsage)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, &dbError{fmt.Errorf("connect: %w", err)}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, &dbError{fmt.Errorf("connect: %w", err)}
	}
	b, err := jwpgx.New(pool, jwpgx.WithPrefix(c.prefix), jwpgx.WithSchema(c.schema))
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return b, pool.Close, nil
}

func (c connFlags) openPq(ctx context.Context) (queue, func(), error) {
	dsn := c.dsn
	if dsn == "" {
		// lib/pq fills whatever the DSN leaves out from the PG* variables.
		dsn = "application_name=jobwatch"
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		// Not the parser's message: it may quote the DSN, password and all.
		return nil, nil, fmt.Errorf("%w: --dsn is not a valid connection string (a postgres:// URL or key=value pairs)", errUsage)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, &dbError{fmt.Errorf("connect: %w", err)}
	}
	b, err := jwpq.New(db, dsn, jwpq.WithPrefix(c.prefix), jwpq.WithSchema(c.schema))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return b, func() { db.Close() }, nil
}

// redact removes the DSN's password from err's message, in every spelling
// it may take there, keeping err's chain for errors.Is.
func (c connFlags) redact(err error) error { return dsnRedactor(c.dsn).Error(err) }

// dsnRedactor hides the password of dsn: every spelling the DSN holds
// (found without trusting it to parse), and the password pgx resolves for
// it (which PGPASSWORD or a passfile may supply), as is and escaped; the
// whole DSN too when it cannot be parsed.
func dsnRedactor(dsn string) redact.Redactor {
	if dsn == "" {
		return redact.Redactor{}
	}
	r := redact.New(redact.Secrets(dsn)...)
	cfg, err := pgconn.ParseConfig(dsn)
	switch {
	case err != nil:
		r.Add(dsn)
	case cfg.Password != "":
		r.Add(cfg.Password, url.QueryEscape(cfg.Password), url.PathEscape(cfg.Password))
	}
	return r
}

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
