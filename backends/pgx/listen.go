package pgx

import (
	"context"
	"fmt"
	"sync"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/listener"
)

// Bounds of the subscription's own housekeeping.
const (
	closeGrace   = 2 * time.Second // Close waits this long for Next to let go of the connection
	closeTimeout = 2 * time.Second // then this long for the Terminate message and cleanup
)

// Listen implements jobwatch.Driver. It takes a connection out of the pool
// for good (Acquire, then Hijack), runs LISTEN on the channel (quoted) and
// returns once that has committed, so a status read made afterwards cannot
// miss a later change. The subscription owns the connection and closes it.
func (b *Backend) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobwatch/pgx: listen: %w", err)
	}
	c := &conn{b: b, conn: pc.Hijack()}
	b.conns.Add(1)
	if _, err := c.conn.Exec(ctx, b.names.ListenSQL()); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("jobwatch/pgx: listen: %w", err)
	}
	pid := c.conn.PgConn().PID()
	c.filter = listener.NewFilter(b.names.Channel, b.names.Queue, b.log, "jobwatch/pgx")
	s := &Subscription{pid: pid}
	s.Sub = listener.New(c, listener.Config{
		Prefix:   "jobwatch/pgx",
		LogAttrs: []any{"pid", pid, "channel", b.names.Channel},
		Log:      b.log,
		Health:   b.health,
		Probe: func(ctx context.Context, payload string) error {
			_, err := b.pool.Exec(ctx, b.names.NotifySQL(), payload)
			return err
		},
		Filter:       c.filter,
		ErrClosed:    ErrSubscriptionClosed,
		ErrUnhealthy: ErrUnhealthy,
		Dead: func(err error) error {
			return fmt.Errorf("jobwatch/pgx: listener connection (pid %d) lost: %w", pid, err)
		},
		CloseGrace:   closeGrace,
		CloseTimeout: closeTimeout,
		OnClose:      func() { b.subs.Remove(s) },
		BeforeProbe:  b.beforeProbe,
	})
	b.subs.Add(s)
	return s, nil
}

// Subscription is one LISTEN on a dedicated connection. Next is pull-based:
// notifications wait in pgx's buffer and the socket until Next reads them.
// Use it from one goroutine at a time; Close may be called from any
// goroutine at any time, and interrupts a blocked Next.
//
// Next returns a hint (an empty Notification) for each table_changed_event
// of this queue's table. While idle it checks the connection every
// health-check interval (a probe through the pool, or a ping of the
// listening connection when the probe cannot be sent); a failed check, or
// any connection error, closes the connection and returns an error (the
// subscription is then dead: Close it and Listen again). When ctx is done
// it returns ctx's error and the subscription stays usable. Once Close has
// begun it returns ErrSubscriptionClosed.
//
// Close interrupts a blocked Next, waits (bounded) for it to let go of the
// connection, and closes the connection. It is idempotent (every call
// returns once the connection is closed) and returns within a few seconds
// whatever the network does.
type Subscription struct {
	*listener.Sub
	pid uint32
}

var (
	_ jobwatch.Subscription   = (*Subscription)(nil)
	_ jobwatch.IgnoredCounter = (*Subscription)(nil)
)

// PID returns the server process id of the listening connection.
func (s *Subscription) PID() uint32 { return s.pid }

// conn is the listening connection as listener.Conn. pgx's connection is
// not safe for concurrent use; the listener only uses it from the holder
// of its semaphore, except Abort, which shuts the socket.
type conn struct {
	b      *Backend
	conn   *pgxv5.Conn
	filter *listener.Filter
	once   sync.Once
}

func (c *conn) Receive(ctx context.Context) (listener.Event, error) {
	n, err := c.conn.WaitForNotification(ctx)
	if err != nil {
		return listener.Activity, err
	}
	return c.filter.Classify(n.Channel, n.Payload), nil
}

func (c *conn) Usable() bool { return !c.conn.IsClosed() }

func (c *conn) Ping(ctx context.Context) error { return c.conn.Ping(ctx) }

func (c *conn) Abort() { _ = c.conn.PgConn().Conn().Close() }

// Close closes the connection, bounded: a polite Terminate, then the
// socket, then it waits (bounded) for pgx's cleanup.
func (c *conn) Close() error {
	c.once.Do(func() {
		defer c.b.conns.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = c.conn.Close(ctx)
		pc := c.conn.PgConn()
		_ = pc.Conn().Close() // ends a background cleanup that drains the socket
		select {
		case <-pc.CleanupDone():
		case <-ctx.Done():
		}
	})
	return nil
}
