package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/dbconn"
)

// measuredDB is the watcher's side of a run: a fresh pool on the watcher's
// role, the backend over it (what jobwatch.New is given, as `jobwatch
// wait` would open it), and the same pool for what a user would write by
// hand (the polling loop) and for the floor.
type measuredDB struct {
	*dbconn.DB
}

// openMeasured opens a pool of at most pool connections on dsn, for driver.
func openMeasured(ctx context.Context, driver, dsn, schema string, pool int) (measuredDB, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: dsn, Driver: driver, Schema: schema, MaxConns: pool})
	if err != nil {
		return measuredDB{}, fmt.Errorf("open the watcher's pool: %w", err)
	}
	return measuredDB{db}, nil
}

// pollStatus runs query (one bigint parameter, one text column) for id.
// found is false when no row came back.
func (d measuredDB) pollStatus(ctx context.Context, query string, id jobwatch.JobID) (status string, found bool, err error) {
	if d.Pgx != nil {
		err = d.Pgx.QueryRow(ctx, query, int64(id)).Scan(&status)
		if errors.Is(err, pgxv5.ErrNoRows) {
			return "", false, nil
		}
	} else {
		err = d.SQL.QueryRowContext(ctx, query, int64(id)).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
	}
	return status, err == nil, err
}

// notify sends payload on channel with pg_notify.
func (d measuredDB) notify(ctx context.Context, channel, payload string) error {
	var err error
	if d.Pgx != nil {
		_, err = d.Pgx.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	} else {
		_, err = d.SQL.ExecContext(ctx, "SELECT pg_notify($1, $2)", channel, payload)
	}
	return err
}

// rawListener is one LISTEN on a dedicated connection.
type rawListener interface {
	// receive blocks until a notification arrives.
	receive(ctx context.Context) error
	close()
}

// listenRaw LISTENs on channel on a dedicated connection.
func (d measuredDB) listenRaw(ctx context.Context, channel string) (rawListener, error) {
	if d.Pgx == nil {
		return listenPq(ctx, d.DSN, channel)
	}
	pc, err := d.Pgx.Acquire(ctx)
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

func listenPq(ctx context.Context, dsn, channel string) (rawListener, error) {
	l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, nil)
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
		<-done
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
