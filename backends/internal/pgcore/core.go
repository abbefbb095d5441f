// Package pgcore is what the PostgreSQL backends (backends/pgx and
// backends/pq) do with the shared SQL of pgschema, written once: the
// installer, the status read and the job lifecycle (enqueue, claim, the
// guarded transitions with their diagnosis), plus option handling and the
// registry of open subscriptions.
//
// It runs statements through DB, a small interface each backend adapts its
// driver to. What stays per driver comes in through Config: how statements
// and transactions run (including argument encoding and rollback), how a
// unique violation is recognized, how errors are worded (each backend's
// prefix) and redacted.
//
// Each backend keeps its exported methods, with their documentation, as
// one-line calls into Core.
package pgcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Rows is a result being read, as *sql.Rows has it (a pgx adapter wraps
// pgx.Rows, whose Close returns nothing). Core always closes it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Querier runs statements: on a pool, or in a transaction. args are
// pgschema's (Go slices for arrays): an adapter encodes them as its driver
// needs. Exec without args must use the simple query protocol (several
// commands in one string); pgx and lib/pq do so by themselves.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	Exec(ctx context.Context, sql string, args ...any) error
}

// DB is a pool that can also run a transaction.
type DB interface {
	Querier
	// InTx runs fn in a transaction, committing when fn returns nil and
	// rolling back otherwise. It returns fn's error itself (unwrapped), so
	// the caller can recognize it.
	InTx(ctx context.Context, fn func(Querier) error) error
}

// Config is what differs between the backends.
type Config struct {
	Names pgschema.Names
	DB    DB
	// Prefix starts every error Core wraps: "jobwatch/pgx" gives
	// "jobwatch/pgx: claim: ...".
	Prefix string
	// Redact, when not nil, is applied to every error Core wraps (backends/pq
	// hides its DSN's password).
	Redact func(error) error
	// PgError extracts the SQLSTATE, constraint name and detail of a
	// server error in err's chain (ok false when there is none).
	PgError func(err error) (sqlstate, constraint, detail string, ok bool)
	// EnqueueInTx runs Enqueue's single statement in an explicit
	// transaction, committed only once every id has been read back, so a
	// failure while reading them rolls the batch back. Without it the
	// statement runs alone, in one round trip.
	EnqueueInTx bool
}

// Core is the installer and lifecycle of one installation over one DB. It
// is safe for concurrent use when DB is.
type Core struct {
	c Config
}

// New returns a Core. Names, DB, Prefix and PgError are required.
func New(c Config) *Core {
	if c.Redact == nil {
		c.Redact = func(err error) error { return err }
	}
	return &Core{c: c}
}

// Fail wraps an error of operation op with the backend's prefix, redacted.
func (c *Core) Fail(op string, err error) error {
	return c.c.Redact(fmt.Errorf("%s: %s: %w", c.c.Prefix, op, err))
}

// Install: see the backends' Install.
func (c *Core) Install(ctx context.Context) (pgschema.InstallResult, error) {
	n := c.c.Names
	var res pgschema.InstallResult
	err := c.c.DB.InTx(ctx, func(q Querier) error {
		if err := q.Exec(ctx, n.LockSQL()); err != nil {
			return err
		}
		var st pgschema.Installation
		if err := queryRow(ctx, q, n.StateSQL(), nil, st.ScanDest()...); err != nil {
			return err
		}
		if st.Complete() {
			changes, err := c.upgrade(ctx, q)
			res.Changes = changes
			return err
		}
		if err := st.Check(); err != nil {
			return err
		}
		if !st.SchemaExists {
			if err := q.Exec(ctx, n.CreateSchemaSQL()); err != nil {
				return err
			}
		}
		if err := q.Exec(ctx, n.InstallSQL()); err != nil {
			return err
		}
		res.Created = true
		return nil
	})
	if err != nil {
		return pgschema.InstallResult{}, c.Fail("install", err)
	}
	return res, nil
}

// upgrade brings a complete installation to the installer's schema (see
// pgschema.Names.Upgrade) in the install transaction and returns what it
// changed.
func (c *Core) upgrade(ctx context.Context, q Querier) ([]string, error) {
	n := c.c.Names
	var found pgschema.Existing
	err := query(ctx, q, n.ExistingSQL(), nil, func(r Rows) error {
		var kind, name, detail string
		if err := r.Scan(&kind, &name, &detail); err != nil {
			return err
		}
		found.Add(kind, name, detail)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var changes []string
	for _, ch := range n.Upgrade(found) {
		if err := q.Exec(ctx, ch.SQL); err != nil {
			return nil, fmt.Errorf("upgrade: %s: %w", ch.What, err)
		}
		changes = append(changes, ch.What)
	}
	return changes, nil
}

// Uninstall: see the backends' Uninstall.
func (c *Core) Uninstall(ctx context.Context) error {
	err := c.c.DB.InTx(ctx, func(q Querier) error {
		if err := q.Exec(ctx, c.c.Names.LockSQL()); err != nil {
			return err
		}
		return q.Exec(ctx, c.c.Names.UninstallSQL())
	})
	if err != nil {
		return c.Fail("uninstall", err)
	}
	return nil
}

// Installed: see the backends' Installed.
func (c *Core) Installed(ctx context.Context) (bool, error) {
	var st pgschema.Installation
	if err := queryRow(ctx, c.c.DB, c.c.Names.StateSQL(), nil, st.ScanDest()...); err != nil {
		return false, c.Fail("installed", err)
	}
	if err := st.Check(); err != nil {
		return false, err
	}
	return st.Complete(), nil
}

// FetchStatuses: see jobwatch.Driver.
func (c *Core) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if len(ids) == 0 {
		return []jobwatch.Status{}, nil
	}
	sql, arg := c.c.Names.FetchStatusesSQL(), any(nil)
	if len(ids) == 1 {
		sql, arg = c.c.Names.FetchStatusSQL(), int64(ids[0])
	} else {
		all := make([]int64, len(ids))
		for i, id := range ids {
			all[i] = int64(id)
		}
		arg = all
	}
	out := make([]jobwatch.Status, 0, len(ids))
	err := query(ctx, c.c.DB, sql, []any{arg}, func(r Rows) error {
		var (
			id     int64
			status string
		)
		if err := r.Scan(&id, &status); err != nil {
			return err
		}
		s, err := pgschema.ParseStatus(id, status)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, c.FailRead("fetch statuses", err)
	}
	return out, nil
}

// FailRead is Fail for a status or feed read: a read that fails because
// the queue's table or schema does not exist is wrapped in a
// *jobwatch.NotInstalledError, so that a Watcher ends its waits with
// ErrNotInstalled instead of retrying forever. Other errors (a revoked
// grant, say) stay as they are: they can pass.
func (c *Core) FailRead(op string, err error) error {
	err = c.Fail(op, err)
	switch code, _, _, _ := c.c.PgError(err); code {
	case sqlstateUndefinedTable, sqlstateInvalidSchema:
		return &jobwatch.NotInstalledError{Prefix: c.c.Names.Prefix, Schema: c.c.Names.Schema, Err: err}
	}
	return err
}

// SQLSTATEs of a queue that is not installed.
const (
	sqlstateUndefinedTable = "42P01"
	sqlstateInvalidSchema  = "3F000"
)

// NotifyRaw: see the backends' NotifyRaw.
func (c *Core) NotifyRaw(ctx context.Context, payload string) error {
	if err := c.c.DB.Exec(ctx, c.c.Names.NotifySQL(), payload); err != nil {
		return c.Fail("notify", err)
	}
	return nil
}

// errNoRows is queryRow's error for a statement that returned no row (none
// of the statements it runs can).
var errNoRows = errors.New("no rows in result set")

// query runs a statement and calls fn for each row, closing the rows
// however it ends.
func query(ctx context.Context, q Querier, sql string, args []any, fn func(Rows) error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// queryRow runs a statement that returns one row and scans it into dest.
func queryRow(ctx context.Context, q Querier, sql string, args []any, dest ...any) error {
	found := false
	err := query(ctx, q, sql, args, func(r Rows) error {
		if found {
			return nil
		}
		found = true
		return r.Scan(dest...)
	})
	if err == nil && !found {
		err = errNoRows
	}
	return err
}

// queryInt64s runs st and returns its single bigint column.
func queryInt64s(ctx context.Context, q Querier, st pgschema.Stmt) ([]int64, error) {
	var out []int64
	err := query(ctx, q, st.SQL, st.Args, func(r Rows) error {
		var v int64
		if err := r.Scan(&v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
