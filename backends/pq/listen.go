package pq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/listener"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Bounds of the subscription's own housekeeping.
const (
	// lib/pq's Listener sleeps between connection attempts for
	// minReconnect, doubling up to maxReconnect, and Close cannot cut a
	// sleep short. A subscription never waits for those reconnects (a lost
	// connection fails it), so both are short: they bound how long the
	// Listener's goroutine outlives Close.
	minReconnect = 100 * time.Millisecond
	maxReconnect = time.Second

	closeGrace   = 100 * time.Millisecond // Close waits this long for Next, then for pq's Close, before shutting the sockets
	closeTimeout = 3 * time.Second        // then this long for every goroutine to end
	pidTimeout   = 2 * time.Second        // bounds the pid lookup in Listen

	defaultBufferSize = 256 // undelivered notifications per subscription
)

// Listen implements jobwatch.Driver. It opens a dedicated lib/pq Listener
// (its own connection, from the DSN given to New, tagged with a unique
// application_name), runs LISTEN on the channel (quoted) and returns once
// the server has acknowledged it, so a status read made afterwards cannot
// miss a later change. It honours ctx even while lib/pq blocks, and fails
// at once, with the connection's error (its password redacted), if the
// first connection attempt fails. The subscription owns the Listener and
// closes it.
func (b *Backend) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, b.core.Fail("listen", err)
	}
	c := &conn{
		b:        b,
		appName:  b.dsn.listenerAppName(listener.RandomHex(6)),
		dialer:   newDialer(&b.conns),
		wake:     make(chan struct{}, 1),
		drained:  make(chan struct{}),
		connFail: make(chan error, 1),
		max:      b.bufferSize,
		filter:   listener.NewFilter(b.names.Channel, b.names.Queue, b.log, "jobwatch/pq"),
	}
	c.closing, c.stopAll = context.WithCancel(context.Background())
	c.l = libpq.NewDialListener(c.dialer, b.dsn.withAppName(c.appName), minReconnect, maxReconnect, c.onEvent)
	go c.drain()

	listened := make(chan error, 1)
	c.helpers.Add(1)
	go func() {
		defer c.helpers.Done()
		listened <- c.l.Listen(b.names.Channel)
	}()
	var err error
	select {
	case err = <-listened:
	case err = <-c.connFail:
	case <-c.drained:
		err = errors.New("the listener stopped")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		c.mu.Lock()
		err = c.dead
		c.mu.Unlock()
	}
	if err != nil {
		_ = c.Close()
		return nil, b.core.Fail("listen", err)
	}
	s := &Subscription{c: c, pid: c.lookupPID(ctx)}
	s.Sub = listener.New(c, listener.Config{
		Prefix:   "jobwatch/pq",
		LogAttrs: []any{"application_name", c.appName, "channel", b.names.Channel},
		Log:      b.log,
		Health:   b.health,
		Probe: func(ctx context.Context, payload string) error {
			err := c.poolCall(ctx, b.health, func(ctx context.Context) error {
				_, err := b.db.ExecContext(ctx, b.names.NotifySQL(), payload)
				return err
			})
			return b.dsn.redactErr(err)
		},
		Filter:       c.filter,
		ErrClosed:    ErrSubscriptionClosed,
		ErrUnhealthy: ErrUnhealthy,
		Dead:         c.deadErr,
		CloseGrace:   closeGrace,
		CloseTimeout: closeTimeout,
		OnClose:      func() { b.subs.Remove(s) },
	})
	b.subs.Add(s)
	return s, nil
}

// Subscription is one LISTEN on a dedicated lib/pq Listener. One goroutine
// drains the Listener's Notify channel into a bounded buffer that Next
// reads; when the buffer overflows its content collapses into one Resync.
// Use Next from one goroutine at a time; Close may be called from any
// goroutine at any time, and interrupts a blocked Next.
//
// Next returns a hint (an empty Notification) for each table_changed_event
// of this queue's table, and a Resync when notifications may have been
// lost (the buffer overflowed, or lib/pq reconnected). While idle it checks
// the connection every health-check interval (a probe through the pool, or
// lib/pq's Ping when the probe cannot be sent); a failed check or a lost
// connection fails the subscription: Next returns an error, and keeps
// returning it (Close it and Listen again). When ctx is done it returns
// ctx's error and the subscription stays usable. Once Close has begun it
// returns ErrSubscriptionClosed.
//
// Close makes a blocked Next return, closes the Listener and its
// connection, and waits for the goroutines it started. lib/pq's Close can
// block (it takes a lock that a stuck Listen, Ping or connection attempt
// holds), so it runs in a goroutine; after a short grace the sockets are
// shut under it, which unblocks all of them. Close is idempotent and
// returns within a few seconds whatever the network does; it returns an
// error only if some goroutine still had not ended then.
type Subscription struct {
	*listener.Sub
	c   *conn
	pid uint32
}

var (
	_ jobwatch.Subscription   = (*Subscription)(nil)
	_ jobwatch.IgnoredCounter = (*Subscription)(nil)
)

// PID returns the server process id of the listening connection, read from
// pg_stat_activity by its application_name when Listen succeeded; 0 if it
// could not be read (then ListenerPIDs leaves it out).
func (s *Subscription) PID() uint32 { return s.pid }

// ApplicationName returns the application_name of the listening connection:
// the DSN's own, if any, then "jobwatch-listener-" and a unique tag.
func (s *Subscription) ApplicationName() string { return s.c.appName }

// conn is the Listener as listener.Conn: what lib/pq forces on a listener.
// Its Notify channel must be drained at once (a slow reader stalls lib/pq's
// connection goroutine), so a goroutine classifies what arrives into a
// bounded buffer; Ping takes no context; a query through the pool can
// outlive its ctx; and Close can block.
type conn struct {
	b       *Backend
	l       *libpq.Listener
	dialer  *dialer
	appName string
	filter  *listener.Filter

	wake     chan struct{} // capacity 1: something changed (buffer, activity, death)
	closing  context.Context
	stopAll  context.CancelFunc // cancels closing, in Close
	drained  chan struct{}      // closed when the drain goroutine ends (Notify closed)
	connFail chan error         // capacity 1: the first connection attempt failed

	mu        sync.Mutex
	queue     []listener.Event // undelivered hints and resyncs, at most max
	max       int
	activity  uint64 // messages received on the connection
	seen      uint64 // activity Receive has reported
	connected bool
	dead      error // why the connection failed; Receive returns it

	helpers sync.WaitGroup // goroutines on the Listener besides the drain (Listen, Ping)
	pool    sync.WaitGroup // goroutines querying through the caller's pool (probe, pid)

	overflows atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Receive returns the next buffered hint or resync, else Activity once
// something else arrived, else blocks until one of those, the connection's
// death or the end of ctx.
func (c *conn) Receive(ctx context.Context) (listener.Event, error) {
	for {
		c.mu.Lock()
		switch {
		case c.dead != nil:
			err := c.dead
			c.mu.Unlock()
			return listener.Activity, err
		case len(c.queue) > 0:
			ev := c.queue[0]
			copy(c.queue, c.queue[1:])
			c.queue = c.queue[:len(c.queue)-1]
			c.seen = c.activity
			c.mu.Unlock()
			return ev, nil
		case c.activity != c.seen:
			c.seen = c.activity
			c.mu.Unlock()
			return listener.Activity, nil
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-ctx.Done():
			return listener.Activity, ctx.Err()
		}
	}
}

func (c *conn) Usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead == nil
}

// deadErr is the error that ends the subscription: the connection's own,
// or err formatted like it.
func (c *conn) deadErr(err error) error {
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	if dead != nil && errors.Is(err, dead) {
		return dead
	}
	return c.b.dsn.redactErr(fmt.Errorf("jobwatch/pq: listener %s: %w", c.appName, err))
}

// Ping runs the Listener's Ping, which takes no context and can block while
// the connection is stuck, in a goroutine bounded by ctx. A stuck Ping is
// released by Close (which shuts the socket).
func (c *conn) Ping(ctx context.Context) error {
	c.helpers.Add(1)
	res := make(chan error, 1)
	go func() {
		defer c.helpers.Done()
		res <- c.l.Ping()
	}()
	select {
	case err := <-res:
		return c.b.dsn.redactErr(err)
	case <-ctx.Done():
		return fmt.Errorf("no reply: %w", ctx.Err())
	}
}

// Abort shuts every socket of the Listener.
func (c *conn) Abort() { c.dialer.shutdown() }

// drain is the only reader of the Listener's Notify channel. It never
// blocks on anything but that channel (it calls neither Ping nor Listen),
// so lib/pq's connection goroutine is never stalled by a slow consumer.
func (c *conn) drain() {
	defer close(c.drained)
	for {
		n, ok := <-c.l.Notify
		if !ok {
			c.fail(errors.New("the listener stopped"))
			return
		}
		c.handle(n)
	}
}

// handle files one message from the Listener: nil (lib/pq re-connected and
// re-listened; anything may have been lost) is a Resync; a hint is
// buffered; anything else only counts as activity. It logs after releasing
// the lock, so a slow log handler never holds up Next.
func (c *conn) handle(n *libpq.Notification) {
	ev := listener.Resync
	if n != nil {
		ev = c.filter.Classify(n.Channel, n.Extra)
	}
	c.mu.Lock()
	c.activity++
	overflow := ev != listener.Activity && c.push(ev)
	c.mu.Unlock()
	if overflow {
		c.overflows.Add(1)
		c.b.log.Warn("jobwatch/pq: notification buffer full; collapsed into one resync",
			"application_name", c.appName, "size", c.max)
	}
	c.signal()
}

// push appends to the buffer (c.mu is held) and reports an overflow. A
// Resync makes everything before it redundant; a full buffer collapses into
// one Resync.
func (c *conn) push(ev listener.Event) (overflow bool) {
	switch {
	case ev == listener.Resync:
		c.queue = append(c.queue[:0], ev)
	case len(c.queue) >= c.max:
		c.queue = append(c.queue[:0], listener.Resync)
		return true
	default:
		c.queue = append(c.queue, ev)
	}
	return false
}

// signal wakes Receive without ever blocking.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// onEvent is lib/pq's event callback. It runs on the Listener's dispatching
// goroutine, so it only records and signals.
func (c *conn) onEvent(ev libpq.ListenerEventType, err error) {
	switch ev {
	case libpq.ListenerEventConnected:
		c.mu.Lock()
		c.connected = true
		c.mu.Unlock()
	case libpq.ListenerEventConnectionAttemptFailed:
		c.mu.Lock()
		connected := c.connected
		c.mu.Unlock()
		if !connected {
			select {
			case c.connFail <- err:
			default:
			}
		}
		c.fail(fmt.Errorf("connection attempt failed: %w", err))
	case libpq.ListenerEventDisconnected:
		c.fail(fmt.Errorf("connection lost: %w", err))
	case libpq.ListenerEventReconnected:
		// A nil notification follows; the connection has failed already.
	}
}

// fail records the first error that ends the connection and wakes Next.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = c.b.dsn.redactErr(fmt.Errorf("jobwatch/pq: listener %s: %w", c.appName, err))
	}
	c.mu.Unlock()
	c.signal()
}

// lookupPID reads the listening connection's server pid by its
// application_name (best effort: 0 when it cannot).
func (c *conn) lookupPID(ctx context.Context) uint32 {
	var pid int64
	err := c.poolCall(ctx, pidTimeout, func(ctx context.Context) error {
		return c.b.db.QueryRowxContext(ctx, pgschema.ListenerPIDSQL, c.appName).Scan(&pid)
	})
	if err != nil {
		c.b.log.Debug("jobwatch/pq: listener pid unknown", "application_name", c.appName,
			"err", c.b.dsn.redactErr(err))
		return 0
	}
	return uint32(pid)
}

// poolCall runs fn, a query through the caller's pool, bounded by timeout,
// ctx and Close. lib/pq honours a cancelled context by asking the server to
// cancel the query and then still waits for its reply, which never comes
// over a half-open connection; so fn runs in a goroutine of its own and a
// stuck query is abandoned (it ends when its connection does).
func (c *conn) poolCall(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
	if c.closing.Err() != nil {
		return ErrSubscriptionClosed
	}
	c.pool.Add(1)
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(c.closing, cancel)
	res := make(chan error, 1)
	go func() {
		defer c.pool.Done()
		defer stop()
		defer cancel()
		res <- fn(callCtx)
	}()
	select {
	case err := <-res:
		return err
	case <-callCtx.Done():
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.closing.Err() != nil {
			return ErrSubscriptionClosed
		}
		return fmt.Errorf("no reply within %v", timeout)
	}
}

// Close closes the Listener and its connection and waits for the
// goroutines it started, bounded; see Subscription. It is idempotent.
func (c *conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *conn) close() error {
	c.stopAll()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = c.l.Close()
	}()
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	select {
	case <-closed:
	case <-grace.C:
	}
	// Refuse new connections and shut the open ones: whatever lib/pq is
	// blocked on (a read, a reply, a dial) fails now.
	c.dialer.shutdown()

	helpers := make(chan struct{})
	go func() {
		defer close(helpers)
		c.helpers.Wait()
	}()
	deadline := time.NewTimer(closeTimeout)
	defer deadline.Stop()
	for _, ch := range []<-chan struct{}{closed, c.drained, helpers} {
		select {
		case <-ch:
		case <-deadline.C:
			c.b.log.Warn("jobwatch/pq: listener did not stop in time", "application_name", c.appName)
			return fmt.Errorf("jobwatch/pq: close: listener goroutines still running after %v", closeTimeout)
		}
	}
	// Queries through the caller's pool were cancelled; they end at once
	// unless their connection is stuck, which is the pool's business.
	queries := make(chan struct{})
	go func() {
		defer close(queries)
		c.pool.Wait()
	}()
	grace.Reset(closeGrace)
	select {
	case <-queries:
	case <-grace.C:
		c.b.log.Debug("jobwatch/pq: a health probe or pid query is stuck on a pool connection",
			"application_name", c.appName)
	}
	return nil
}

// dialer is the Listener's dialer. It remembers the connections it made so
// that Close can shut them under lib/pq, and refuses to dial after that.
type dialer struct {
	d      net.Dialer
	ctx    context.Context
	cancel context.CancelFunc
	open   *atomic.Int64 // the Backend's count of open listening connections

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var errDialerClosed = errors.New("jobwatch/pq: subscription closed")

func newDialer(open *atomic.Int64) *dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{ctx: ctx, cancel: cancel, open: open, conns: map[*trackedConn]struct{}{}}
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// DialContext implements lib/pq's DialerContext; shutdown cancels it.
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, errDialerClosed
		}
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_ = c.Close()
		return nil, errDialerClosed
	}
	d.conns[tc] = struct{}{}
	d.open.Add(1)
	return tc, nil
}

// shutdown cancels dials in progress, refuses new ones and closes every
// open connection.
func (d *dialer) shutdown() {
	d.cancel()
	d.mu.Lock()
	d.closed = true
	conns := d.conns
	d.conns = map[*trackedConn]struct{}{}
	d.open.Add(-int64(len(conns)))
	d.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	d *dialer
}

func (c *trackedConn) Close() error {
	c.d.mu.Lock()
	if _, ok := c.d.conns[c]; ok {
		delete(c.d.conns, c)
		c.d.open.Add(-1)
	}
	c.d.mu.Unlock()
	return c.Conn.Close()
}
