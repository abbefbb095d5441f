package pgx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

// Bounds of the subscription's own housekeeping.
const (
	closeGrace   = 2 * time.Second // Close waits this long for Next to let go of the connection
	closeTimeout = 2 * time.Second // then this long for the Terminate message and cleanup
	maxProbes    = 8               // outstanding probe ids remembered
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
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, b.names.ListenSQL()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("jobwatch/pgx: listen: %w", err)
	}
	s := &Subscription{
		b:          b,
		conn:       conn,
		pid:        conn.PgConn().PID(),
		sem:        make(chan struct{}, 1),
		done:       make(chan struct{}),
		closedDone: make(chan struct{}),
		probes:     map[string]struct{}{},
	}
	b.subs.Add(s)
	return s, nil
}

// Subscription is one LISTEN on a dedicated connection. Next is pull-based:
// notifications wait in pgx's buffer and the socket until Next reads them.
// Use it from one goroutine at a time; Close may be called from any
// goroutine at any time, and interrupts a blocked Next.
type Subscription struct {
	b    *Backend
	conn *pgxv5.Conn
	pid  uint32

	// sem is held by whoever uses conn (Next, or Close once Next let go):
	// a pgx connection is not safe for concurrent use.
	sem chan struct{}

	mu         sync.Mutex
	closed     bool
	done       chan struct{}      // closed when Close starts
	closedDone chan struct{}      // closed when Close has finished
	cancel     context.CancelFunc // interrupts the running Next, if any

	// Owned by the holder of sem.
	dead   error               // set when the connection failed
	probes map[string]struct{} // our outstanding health-check probe ids

	ignored atomic.Uint64
}

var (
	_ jobwatch.Subscription   = (*Subscription)(nil)
	_ jobwatch.IgnoredCounter = (*Subscription)(nil)
)

// PID returns the server process id of the listening connection.
func (s *Subscription) PID() uint32 { return s.pid }

// Ignored implements jobwatch.IgnoredCounter: how many notifications Next
// dropped because they were not a change of this queue (other event types,
// another table, garbage). Its own health-check probes are not counted.
func (s *Subscription) Ignored() uint64 { return s.ignored.Load() }

// Next implements jobwatch.Subscription. It returns a hint (an empty
// Notification) for each table_changed_event of this queue's table. While
// idle it checks the connection every health-check interval; a failed
// check, or any connection error, closes the connection and returns an
// error (the subscription is then dead: Close it and Listen again). When
// ctx is done it returns ctx's error and the subscription stays usable.
// After Close it returns ErrSubscriptionClosed.
func (s *Subscription) Next(ctx context.Context) (jobwatch.Notification, error) {
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return jobwatch.Notification{}, ErrSubscriptionClosed
	case <-ctx.Done():
		return jobwatch.Notification{}, ctx.Err()
	}
	defer func() { <-s.sem }()

	opCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return jobwatch.Notification{}, ErrSubscriptionClosed
	}
	s.cancel = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cancel = nil
		s.mu.Unlock()
	}()

	if s.dead != nil {
		return jobwatch.Notification{}, s.dead
	}
	n, err := s.next(opCtx)
	if err == nil {
		return n, nil
	}
	switch {
	case s.isClosed():
		return jobwatch.Notification{}, ErrSubscriptionClosed
	case ctx.Err() != nil && !s.conn.IsClosed():
		return jobwatch.Notification{}, ctx.Err()
	}
	s.dead = fmt.Errorf("jobwatch/pgx: listener connection (pid %d) lost: %w", s.pid, err)
	closeConn(s.conn)
	s.b.log.Warn("jobwatch/pgx: listener failed", "pid", s.pid, "channel", s.b.names.Channel, "err", err)
	return jobwatch.Notification{}, s.dead
}

// next waits for the next relevant notification, health-checking while
// idle. Any error it returns ends Next.
func (s *Subscription) next(ctx context.Context) (jobwatch.Notification, error) {
	for {
		waitCtx, cancel := ctx, context.CancelFunc(func() {})
		if s.b.health > 0 {
			waitCtx, cancel = context.WithTimeout(ctx, s.b.health)
		}
		n, err := s.conn.WaitForNotification(waitCtx)
		idle := err != nil && ctx.Err() == nil && waitCtx.Err() != nil && !s.conn.IsClosed()
		cancel()
		if err == nil {
			if note, ok := s.handle(n); ok {
				return note, nil
			}
			continue
		}
		if !idle {
			return jobwatch.Notification{}, err
		}
		note, ok, err := s.healthCheck(ctx)
		if err != nil {
			return jobwatch.Notification{}, err
		}
		if ok {
			return note, nil
		}
	}
}

// healthCheck proves the connection alive end to end, PgQueuer style: it
// sends a health_check_event probe on the channel from the pool and waits,
// up to the health-check interval, for anything to arrive on the listening
// connection. If the probe cannot be sent (the pool is exhausted or the
// database busy) it falls back to a bounded ping of the listening
// connection. It returns a notification to deliver when the first thing to
// arrive was one.
func (s *Subscription) healthCheck(ctx context.Context) (jobwatch.Notification, bool, error) {
	timeout := s.b.health
	id := probeID()
	payload, _ := json.Marshal(map[string]string{
		"type":    notify.TypeHealthCheck,
		"id":      id,
		"channel": s.b.names.Channel,
	})
	if len(s.probes) >= maxProbes {
		clear(s.probes) // probes that never came back: the next check decides
	}
	s.probes[id] = struct{}{}

	sendCtx, cancel := context.WithTimeout(ctx, timeout)
	_, err := s.b.pool.Exec(sendCtx, s.b.names.NotifySQL(), string(payload))
	cancel()
	if err != nil {
		delete(s.probes, id)
		if ctx.Err() != nil {
			return jobwatch.Notification{}, false, ctx.Err()
		}
		s.b.log.Debug("jobwatch/pgx: health probe not sent; pinging the listener instead", "pid", s.pid, "err", err)
		pingCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := s.conn.Ping(pingCtx); err != nil {
			if ctx.Err() != nil {
				return jobwatch.Notification{}, false, ctx.Err()
			}
			return jobwatch.Notification{}, false, fmt.Errorf("%w: ping: %w", ErrUnhealthy, err)
		}
		return jobwatch.Notification{}, false, nil
	}

	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := s.conn.WaitForNotification(waitCtx)
	if err != nil {
		if ctx.Err() != nil || s.conn.IsClosed() || !pgconn.Timeout(err) {
			return jobwatch.Notification{}, false, err
		}
		return jobwatch.Notification{}, false, fmt.Errorf("%w: probe not received within %v", ErrUnhealthy, timeout)
	}
	// Whatever arrived came over the socket just now: it is alive. A late
	// probe of ours is dropped silently when it comes.
	note, ok := s.handle(n)
	return note, ok, nil
}

// handle classifies one notification: a hint to deliver, or something to
// drop (counted, unless it is our own probe).
func (s *Subscription) handle(n *pgconn.Notification) (jobwatch.Notification, bool) {
	if n == nil {
		return jobwatch.Notification{}, false
	}
	if n.Channel != s.b.names.Channel {
		s.drop(n, "other channel")
		return jobwatch.Notification{}, false
	}
	ev, err := notify.Parse(n.Payload)
	if err != nil {
		s.drop(n, err.Error())
		return jobwatch.Notification{}, false
	}
	switch ev.Kind {
	case notify.TableChanged:
		if ev.Table != "" && ev.Table != s.b.names.Queue {
			s.drop(n, "another table")
			return jobwatch.Notification{}, false
		}
		return jobwatch.Notification{}, true
	case notify.HealthCheck:
		if _, ours := s.probes[ev.ProbeID]; ours {
			delete(s.probes, ev.ProbeID)
			return jobwatch.Notification{}, false
		}
	}
	s.drop(n, "event type "+ev.Type)
	return jobwatch.Notification{}, false
}

func (s *Subscription) drop(n *pgconn.Notification, why string) {
	s.ignored.Add(1)
	s.b.log.Debug("jobwatch/pgx: notification ignored", "channel", n.Channel, "reason", why,
		"payload_bytes", len(n.Payload))
}

func (s *Subscription) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close implements jobwatch.Subscription: it interrupts a blocked Next,
// waits (bounded) for it to let go of the connection, and closes the
// connection. It is idempotent (every call returns once the connection is
// closed) and returns within a few seconds whatever the network does.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closedDone
		return nil
	}
	s.closed = true
	close(s.done)
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	defer close(s.closedDone)
	defer s.b.subs.Remove(s)

	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case s.sem <- struct{}{}:
		// We own the connection now, for good.
		closeConn(s.conn)
	case <-timer.C:
		// Next is stuck despite the cancel: shut the socket under it. Its
		// read fails at once and it returns ErrSubscriptionClosed.
		_ = s.conn.PgConn().Conn().Close()
		s.b.log.Warn("jobwatch/pgx: listener did not stop in time; socket closed", "pid", s.pid)
	}
	return nil
}

// closeConn closes a connection this package owns, bounded: a polite
// Terminate, then the socket, then it waits (bounded) for pgx's cleanup.
func closeConn(conn *pgxv5.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx)
	pc := conn.PgConn()
	_ = pc.Conn().Close() // ends a background cleanup that drains the socket
	select {
	case <-pc.CleanupDone():
	case <-ctx.Done():
	}
}

func probeID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
