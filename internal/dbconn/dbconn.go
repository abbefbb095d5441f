// Package dbconn opens jobwatch's PostgreSQL backends (backends/pgx,
// backends/pq) from a connection string, and keeps the string's password
// out of the errors it returns. It is shared by cmd/jobwatch and the
// benchmark program, so that both connect the same way.
package dbconn

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" database/sql driver

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/redact"
	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// ConfigError is a Config that cannot be used: an unknown driver, a
// connection string that does not parse, a bad prefix or schema. It is the
// caller's input, not the database's.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConnectError is a database that could not be reached or did not answer.
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string { return "connect: " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// Queue is what the command and the benchmark need of a PostgreSQL
// backend; backends/pgx and backends/pq both provide it.
type Queue interface {
	jobwatch.Driver
	Install(ctx context.Context) (jwpgx.InstallResult, error)
	Uninstall(ctx context.Context) error
	Installed(ctx context.Context) (bool, error)
	Enqueue(ctx context.Context, jobs ...jwqueue.NewJob) ([]jobwatch.JobID, error)
	Claim(ctx context.Context, req jwqueue.ClaimRequest) ([]jwqueue.Job, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
	Inspect(ctx context.Context, id jobwatch.JobID) (jwqueue.JobInfo, error)
	QueueTable() string
	LogTable() string
	Channel() string
}

// Config says how to connect.
type Config struct {
	DSN    string // URL or key=value; empty: libpq's PG* variables
	Driver string // "pgx" or "pq"
	Prefix string // prefix of the queue's object names
	Schema string // schema of the queue's objects; empty: the search_path
	// MaxConns caps the pool's connections; 0 keeps the driver's default.
	MaxConns int
}

// DB is an open backend and the pool under it. Exactly one of Pgx and SQL
// is set, by Config.Driver.
type DB struct {
	Queue Queue
	Pgx   *pgxpool.Pool // driver pgx
	SQL   *sqlx.DB      // driver pq
	// DSN is the connection string lib/pq's listeners need (driver pq).
	DSN string
}

// Close releases the pool. It is idempotent.
func (d *DB) Close() {
	switch {
	case d.Pgx != nil:
		d.Pgx.Close()
	case d.SQL != nil:
		_ = d.SQL.Close()
	}
}

// Open connects, checks that the database answers, and returns the backend.
// Bad configuration is a *ConfigError; a database that does not answer is a
// *ConnectError. No error holds the DSN's password. ctx bounds the
// connection attempt.
func Open(ctx context.Context, c Config) (*DB, error) {
	var d *DB
	var err error
	switch c.Driver {
	case "pgx":
		d, err = openPgx(ctx, c)
	case "pq":
		d, err = openPq(ctx, c)
	default:
		return nil, &ConfigError{fmt.Errorf("--driver must be pgx or pq, not %q", c.Driver)}
	}
	if err != nil {
		return nil, Redactor(c.DSN).Error(err)
	}
	return d, nil
}

func openPgx(ctx context.Context, c Config) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		return nil, dsnError(c.DSN, err)
	}
	if c.MaxConns > 0 {
		cfg.MaxConns = int32(c.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &ConnectError{err}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, &ConnectError{err}
	}
	b, err := jwpgx.New(pool, jwpgx.WithPrefix(c.Prefix), jwpgx.WithSchema(c.Schema))
	if err != nil {
		pool.Close()
		return nil, &ConfigError{err}
	}
	return &DB{Queue: b, Pgx: pool}, nil
}

func openPq(ctx context.Context, c Config) (*DB, error) {
	dsn := c.DSN
	if dsn == "" {
		// lib/pq fills whatever the DSN leaves out from the PG* variables.
		dsn = "application_name=jobwatch"
	}
	if err := checkPqDSN(dsn); err != nil {
		return nil, err
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return nil, dsnError(dsn, err)
	}
	if c.MaxConns > 0 {
		db.SetMaxOpenConns(c.MaxConns)
		db.SetMaxIdleConns(c.MaxConns)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, &ConnectError{err}
	}
	b, err := jwpq.New(db, dsn, jwpq.WithPrefix(c.Prefix), jwpq.WithSchema(c.Schema))
	if err != nil {
		db.Close()
		return nil, &ConfigError{err}
	}
	return &DB{Queue: b, SQL: db, DSN: dsn}, nil
}

// Redactor hides the password of dsn: every spelling the DSN holds (found
// without trusting it to parse), and the password pgx resolves for it
// (which PGPASSWORD or a passfile may supply), as is and escaped; the whole
// DSN too when it cannot be parsed.
func Redactor(dsn string) redact.Redactor {
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
