package pq

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
)

// sqlQuerier is what the pool and a transaction have in common.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// querier adapts the pool or a transaction to pgcore.Querier.
type querier struct{ q sqlQuerier }

func (q querier) Query(ctx context.Context, sql string, args ...any) (pgcore.Rows, error) {
	rows, err := q.q.QueryContext(ctx, sql, encode(args)...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (q querier) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := q.q.ExecContext(ctx, sql, encode(args)...)
	return err
}

// encode adapts pgschema's arguments to database/sql: lib/pq takes arrays
// through pq.Array (the SQL casts each one, e.g. $1::bigint[]).
func encode(args []any) []any {
	if len(args) == 0 {
		return args
	}
	out := make([]any, len(args))
	for i, a := range args {
		switch a.(type) {
		case []int64, []string, [][]byte, []float64, []bool:
			out[i] = libpq.Array(a)
		default:
			out[i] = a
		}
	}
	return out
}

// sqlxDB is the pool as a pgcore.DB.
type sqlxDB struct {
	querier
	db     *sqlx.DB
	log    *slog.Logger
	redact func(error) error
}

func newSqlxDB(db *sqlx.DB, log *slog.Logger, redact func(error) error) sqlxDB {
	return sqlxDB{querier{db}, db, log, redact}
}

// Query on the pool gives up as soon as ctx ends, even when lib/pq does
// not: after a cancelled query lib/pq waits for the server's answer, which
// never comes over a half-open connection, and the Watcher's reads would
// stall behind it. The abandoned call finishes, and closes its rows, when
// that connection finally fails.
func (d sqlxDB) Query(ctx context.Context, sql string, args ...any) (pgcore.Rows, error) {
	type result struct {
		rows pgcore.Rows
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := d.querier.Query(ctx, sql, args...)
		done <- result{rows, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		return &ctxRows{ctx: ctx, rows: r.rows}, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.rows != nil {
				_ = r.rows.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// ctxRows gives up reading rows as soon as ctx ends, for the same reason
// as Query: when ctx ends in the middle of a result whose rest never comes
// (the server sent it all, so lib/pq's cancel request changes nothing, and
// the network holds it), lib/pq's Next waits on the socket regardless. Then
// Next returns false and Err ctx's error, so the caller fails instead of
// waiting, and never takes the rows read so far for the whole result. The
// abandoned Next finishes, and the rows are closed (their connection going
// back to the pool), when the read ends.
type ctxRows struct {
	ctx  context.Context
	rows pgcore.Rows
	err  error     // ctx's error, once Next gave up
	next chan bool // the abandoned Next, once Next gave up
}

func (r *ctxRows) Next() bool {
	if r.err != nil {
		return false
	}
	ch := make(chan bool, 1)
	go func() { ch <- r.rows.Next() }()
	select {
	case ok := <-ch:
		return ok
	case <-r.ctx.Done():
		r.err, r.next = r.ctx.Err(), ch
		return false
	}
}

func (r *ctxRows) Scan(dest ...any) error { return r.rows.Scan(dest...) }

func (r *ctxRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

func (r *ctxRows) Close() error {
	if r.next != nil {
		go func() {
			<-r.next
			_ = r.rows.Close()
		}()
		return nil
	}
	return r.rows.Close()
}

// InTx runs fn in a transaction, committing when it returns nil and rolling
// back otherwise. (database/sql also rolls back by itself when ctx ends.)
func (d sqlxDB) InTx(ctx context.Context, fn func(pgcore.Querier) error) error {
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(querier{tx}); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			d.log.Warn("jobwatch/pq: rollback failed", "err", d.redact(rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// pgError reads a server error's SQLSTATE, constraint and detail, as
// lib/pq reports it, or pgx when db runs on pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib).
func pgError(err error) (sqlstate, constraint, detail string, ok bool) {
	var pqErr *libpq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code), pqErr.Constraint, pqErr.Detail, true
	}
	var pgxErr *pgconn.PgError
	if errors.As(err, &pgxErr) {
		return pgxErr.Code, pgxErr.ConstraintName, pgxErr.Detail, true
	}
	return "", "", "", false
}
