package pgx

import (
	"context"
	"errors"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
)

// rollbackTimeout bounds the rollback of a failed transaction, which runs
// even when the caller's ctx is done.
const rollbackTimeout = 5 * time.Second

// pgxQuerier is what a pool and a transaction have in common.
type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgxv5.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// querier adapts a pool or a transaction to pgcore.Querier. pgx encodes
// pgschema's slice arguments natively, so they pass through as they are.
type querier struct{ q pgxQuerier }

func (q querier) Query(ctx context.Context, sql string, args ...any) (pgcore.Rows, error) {
	rows, err := q.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return rowsAdapter{rows}, nil
}

func (q querier) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := q.q.Exec(ctx, sql, args...)
	return err
}

// rowsAdapter gives pgx.Rows the Close of pgcore.Rows.
type rowsAdapter struct{ pgxv5.Rows }

func (r rowsAdapter) Close() error {
	r.Rows.Close()
	return nil
}

// poolDB is the pool as a pgcore.DB.
type poolDB struct {
	querier
	pool *pgxpool.Pool
}

func newPoolDB(pool *pgxpool.Pool) poolDB { return poolDB{querier{pool}, pool} }

// InTx runs fn in a transaction, committing when it returns nil and
// rolling back (bounded, even if ctx is done) otherwise.
func (d poolDB) InTx(ctx context.Context, fn func(pgcore.Querier) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(querier{tx}); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
		return err
	}
	return tx.Commit(ctx)
}

// pgError reads a server error's SQLSTATE, constraint and detail.
func pgError(err error) (sqlstate, constraint, detail string, ok bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return "", "", "", false
	}
	return pgErr.Code, pgErr.ConstraintName, pgErr.Detail, true
}
