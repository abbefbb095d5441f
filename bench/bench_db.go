package main

import (
	"context"
	"database/sql"
	"errors"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
)

// benchQueue is a backend as the bench needs it: the commands' queue, plus
// the tables' names for the polling baseline's own SQL (and ANALYZE).
type benchQueue interface {
	queue
	QueueTable() string
	LogTable() string
	Channel() string
	NotifyRaw(ctx context.Context, payload string) error
}

// benchDB is the measured side of the bench: the backend the watchers read
// through, and the same pool for what a user would write by hand (the
// polling baseline) and for the raw floor. Jobs are enqueued and completed
// through another pool (the "workers"), so that the measured pool carries
// only the reads being measured.
type benchDB interface {
	queue() benchQueue
	// pollStatus runs sql (one bigint parameter, one text column) for id
	// on a connection of the pool; dt is the query's own wall time, without
	// the wait for a connection. found is false when no row came back.
	pollStatus(ctx context.Context, sql string, id jobwatch.JobID) (status string, found bool, dt time.Duration, err error)
	// notify sends payload on channel with pg_notify.
	notify(ctx context.Context, channel, payload string) error
	// listenRaw LISTENs on channel on a dedicated connection.
	listenRaw(ctx context.Context, channel string) (rawListener, error)
	// exec runs a statement without parameters.
	exec(ctx context.Context, sql string) error
	// text runs a query that returns one text value.
	text(ctx context.Context, sql string) (string, error)
	close()
}

// rawListener is one LISTEN on a dedicated connection.
type rawListener interface {
	// receive blocks until a notification arrives.
	receive(ctx context.Context) error
	close()
}

// openBenchDB opens the measured pool, with at most poolSize connections,
// for c.driver. Errors are those of connFlags.openDB, unredacted.
func openBenchDB(ctx context.Context, c connFlags, poolSize int) (benchDB, error) {
	db, err := c.openDB(ctx, poolSize)
	if err != nil {
		return nil, err
	}
	if db.Pgx != nil {
		return &pgxBench{pool: db.Pgx, b: db.Queue.(*jwpgx.Backend)}, nil
	}
	return &pqBench{db: db.SQL, dsn: db.DSN, b: db.Queue.(*jwpq.Backend)}, nil
}

// pgx

type pgxBench struct {
	pool *pgxpool.Pool
	b    *jwpgx.Backend
}

func (d *pgxBench) queue() benchQueue { return d.b }
func (d *pgxBench) close()            { d.pool.Close() }

func (d *pgxBench) pollStatus(ctx context.Context, sql string, id jobwatch.JobID) (string, bool, time.Duration, error) {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return "", false, 0, err
	}
	defer conn.Release()
	var status string
	start := time.Now()
	err = conn.QueryRow(ctx, sql, int64(id)).Scan(&status)
	dt := time.Since(start)
	if errors.Is(err, pgxv5.ErrNoRows) {
		return "", false, dt, nil
	}
	return status, err == nil, dt, err
}

func (d *pgxBench) notify(ctx context.Context, channel, payload string) error {
	_, err := d.pool.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	return err
}

func (d *pgxBench) exec(ctx context.Context, sql string) error {
	_, err := d.pool.Exec(ctx, sql)
	return err
}

func (d *pgxBench) text(ctx context.Context, sql string) (string, error) {
	var s string
	err := d.pool.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

func (d *pgxBench) listenRaw(ctx context.Context, channel string) (rawListener, error) {
	pc, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Hijack() // a listening connection never goes back to the pool
	if _, err := conn.Exec(ctx, "LISTEN "+pgxv5.Identifier{channel}.Sanitize()); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		return nil, err
	}
	return pgxListener{conn}, nil
}

type pgxListener struct{ conn *pgxv5.Conn }

func (l pgxListener) receive(ctx context.Context) error {
	_, err := l.conn.WaitForNotification(ctx)
	return err
}

func (l pgxListener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.conn.Close(ctx)
}

// lib/pq

type pqBench struct {
	db  *sqlx.DB
	dsn string
	b   *jwpq.Backend
}

func (d *pqBench) queue() benchQueue { return d.b }
func (d *pqBench) close()            { d.db.Close() }

func (d *pqBench) pollStatus(ctx context.Context, query string, id jobwatch.JobID) (string, bool, time.Duration, error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return "", false, 0, err
	}
	defer conn.Close()
	var status string
	start := time.Now()
	err = conn.QueryRowContext(ctx, query, int64(id)).Scan(&status)
	dt := time.Since(start)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, dt, nil
	}
	return status, err == nil, dt, err
}

func (d *pqBench) notify(ctx context.Context, channel, payload string) error {
	_, err := d.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	return err
}

func (d *pqBench) exec(ctx context.Context, query string) error {
	_, err := d.db.ExecContext(ctx, query)
	return err
}

func (d *pqBench) text(ctx context.Context, query string) (string, error) {
	var s string
	err := d.db.QueryRowContext(ctx, query).Scan(&s)
	return s, err
}

func (d *pqBench) listenRaw(ctx context.Context, channel string) (rawListener, error) {
	l := pq.NewListener(d.dsn, 10*time.Millisecond, time.Second, nil)
	done := make(chan error, 1)
	go func() { done <- l.Listen(channel) }()
	select {
	case err := <-done:
		if err != nil {
			_ = l.Close()
			return nil, err
		}
	case <-ctx.Done():
		_ = l.Close()
		return nil, ctx.Err()
	}
	return pqListener{l}, nil
}

type pqListener struct{ l *pq.Listener }

func (l pqListener) receive(ctx context.Context) error {
	select {
	case n := <-l.l.Notify:
		if n == nil {
			return errors.New("listener reconnected")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l pqListener) close() { _ = l.l.Close() }
