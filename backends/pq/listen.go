package pq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/notify"
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

	closeGrace   = 100 * time.Millisecond // Close waits this long for pq's Close before shutting the sockets
	closeTimeout = 3 * time.Second        // then this long for every goroutine to end
	pidTimeout   = 2 * time.Second        // bounds the pid lookup in Listen
	maxProbes    = 8                      // outstanding probe ids remembered

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
	tag := randomHex(6)
	s := &Subscription{
		b:        b,
		appName:  b.dsn.listenerAppName(tag),
		dialer:   newDialer(),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		drained:  make(chan struct{}),
		connFail: make(chan error, 1),
		probes:   map[string]struct{}{},
		max:      b.bufferSize,
	}
	s.closing, s.stopAll = context.WithCancel(context.Background())
	s.l = libpq.NewDialListener(s.dialer, b.dsn.withAppName(s.appName), minReconnect, maxReconnect, s.onEvent)
	go s.drain()

	listened := make(chan error, 1)
	s.helpers.Add(1)
	go func() {
		defer s.helpers.Done()
		listened <- s.l.Listen(b.names.Channel)
	}()
	var err error
	select {
	case err = <-listened:
	case err = <-s.connFail:
	case <-s.drained:
		err = errors.New("the listener stopped")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		s.mu.Lock()
		err = s.dead
		s.mu.Unlock()
	}
	if err != nil {
		_ = s.Close()
		return nil, b.core.Fail("listen", err)
	}
	s.pid = s.lookupPID(ctx)
	b.subs.Add(s)
	return s, nil
}

// Subscription is one LISTEN on a dedicated lib/pq Listener. One goroutine
// drains the Listener's Notify channel into a bounded buffer that Next
// reads; when the buffer overflows its content collapses into one Resync.
// Use Next from one goroutine at a time; Close may be called from any
// goroutine at any time, and interrupts a blocked Next.
type Subscription struct {
	b       *Backend
	l       *libpq.Listener
	dialer  *dialer
	appName string
	pid     uint32 // set by Listen before the subscription is shared

	wake     chan struct{} // capacity 1: something changed (buffer, activity, death)
	done     chan struct{} // closed by Close
	closing  context.Context
	stopAll  context.CancelFunc // cancels closing, in Close
	drained  chan struct{}      // closed when the drain goroutine ends (Notify closed)
	connFail chan error         // capacity 1: the first connection attempt failed

	mu        sync.Mutex
	queue     []jobwatch.Notification // undelivered, at most max
	max       int
	activity  uint64              // messages received on the connection
	probes    map[string]struct{} // our outstanding health-check probe ids
	connected bool
	dead      error // why the subscription failed; Next returns it
	closed    bool

	helpers sync.WaitGroup // goroutines on the Listener besides the drain (Listen, Ping)
	pool    sync.WaitGroup // goroutines querying through the caller's pool (probe, pid)

	ignored   atomic.Uint64
	overflows atomic.Uint64
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
func (s *Subscription) ApplicationName() string { return s.appName }

// Ignored implements jobwatch.IgnoredCounter: how many notifications were
// dropped because they were not a change of this queue (other event types,
// another table, garbage). Its own health-check probes are not counted.
func (s *Subscription) Ignored() uint64 { return s.ignored.Load() }

// Next implements jobwatch.Subscription. It returns a hint (an empty
// Notification) for each table_changed_event of this queue's table, and a
// Resync when notifications may have been lost (the buffer overflowed, or
// lib/pq reconnected). While idle it checks the connection every
// health-check interval; a failed check or a lost connection fails the
// subscription: Next returns an error, and keeps returning it (Close it and
// Listen again). When ctx is done it returns ctx's error and the
// subscription stays usable. After Close it returns ErrSubscriptionClosed.
func (s *Subscription) Next(ctx context.Context) (jobwatch.Notification, error) {
	if err := ctx.Err(); err != nil {
		return jobwatch.Notification{}, err
	}
	var (
		idle  *time.Timer
		idleC <-chan time.Time
		armed uint64 // the activity count when the idle timer was armed
	)
	for {
		n, ok, seen, err := s.pop()
		if err != nil || ok {
			return n, err
		}
		if idle == nil && s.b.health > 0 {
			idle = time.NewTimer(s.b.health)
			defer idle.Stop()
			idleC, armed = idle.C, seen
		}
		select {
		case <-s.wake:
			continue
		case <-s.done:
			return jobwatch.Notification{}, ErrSubscriptionClosed
		case <-ctx.Done():
			return jobwatch.Notification{}, ctx.Err()
		case <-idleC:
		}
		if now := s.activityCount(); now != armed {
			// Traffic arrived during the interval (ignored or not): the
			// connection is alive.
			armed = now
			idle.Reset(s.b.health)
			continue
		}
		if err := s.healthCheck(ctx); err != nil {
			switch {
			case s.isClosed():
				return jobwatch.Notification{}, ErrSubscriptionClosed
			case ctx.Err() != nil:
				return jobwatch.Notification{}, ctx.Err()
			}
			s.fail(err)
			return jobwatch.Notification{}, s.deadErr()
		}
		armed = s.activityCount()
		idle.Reset(s.b.health)
	}
}

// pop returns the next buffered notification (ok), or the subscription's
// error, or neither, with the activity count seen.
func (s *Subscription) pop() (n jobwatch.Notification, ok bool, seen uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return n, false, 0, ErrSubscriptionClosed
	case s.dead != nil:
		return n, false, 0, s.dead
	case len(s.queue) > 0:
		n = s.queue[0]
		copy(s.queue, s.queue[1:])
		s.queue[len(s.queue)-1] = jobwatch.Notification{}
		s.queue = s.queue[:len(s.queue)-1]
		return n, true, 0, nil
	}
	return n, false, s.activity, nil
}

func (s *Subscription) activityCount() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activity
}

func (s *Subscription) deadErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSubscriptionClosed
	}
	return s.dead
}

// healthCheck proves the connection alive end to end, PgQueuer style: it
// sends a health_check_event probe on the channel from the pool and waits,
// up to the health-check interval, for anything to arrive on the listening
// connection. If the probe cannot be sent (the pool is exhausted or the
// database busy) it falls back to a bounded Ping of the listening
// connection (lib/pq's Ping takes no context, so it runs in a goroutine).
func (s *Subscription) healthCheck(ctx context.Context) error {
	timeout := s.b.health
	id := randomHex(12)
	payload, _ := json.Marshal(map[string]string{
		"type":    notify.TypeHealthCheck,
		"id":      id,
		"channel": s.b.names.Channel,
	})
	s.mu.Lock()
	if len(s.probes) >= maxProbes {
		clear(s.probes) // probes that never came back: the next check decides
	}
	s.probes[id] = struct{}{}
	seen := s.activity
	s.mu.Unlock()

	err := s.poolCall(ctx, timeout, func(ctx context.Context) error {
		_, err := s.b.db.ExecContext(ctx, s.b.names.NotifySQL(), string(payload))
		return err
	})
	if err != nil {
		s.mu.Lock()
		delete(s.probes, id)
		s.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.b.log.Debug("jobwatch/pq: health probe not sent; pinging the listener instead",
			"application_name", s.appName, "err", s.b.dsn.redactErr(err))
		if err := s.ping(ctx, timeout); err != nil {
			return fmt.Errorf("%w: ping: %w", ErrUnhealthy, err)
		}
		return nil
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if s.activityCount() != seen {
			// Whatever arrived came over the socket just now: it is
			// alive. A late probe of ours is dropped silently. Next
			// looks at the buffer again when this returns.
			return nil
		}
		if err := s.deadErr(); err != nil {
			return err
		}
		select {
		case <-s.wake:
		case <-deadline.C:
			return fmt.Errorf("%w: probe not received within %v", ErrUnhealthy, timeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrSubscriptionClosed
		}
	}
}

// ping runs the Listener's Ping, which takes no context and can block while
// the connection is stuck, in a goroutine bounded by timeout and ctx. A
// stuck Ping is released by Close (which shuts the socket).
func (s *Subscription) ping(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSubscriptionClosed
	}
	s.helpers.Add(1)
	s.mu.Unlock()
	res := make(chan error, 1)
	go func() {
		defer s.helpers.Done()
		res <- s.l.Ping()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-res:
		return s.b.dsn.redactErr(err)
	case <-t.C:
		return fmt.Errorf("no reply within %v", timeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrSubscriptionClosed
	}
}

// drain is the only reader of the Listener's Notify channel. It never
// blocks on anything but that channel (it calls neither Ping nor Listen),
// so lib/pq's connection goroutine is never stalled by a slow consumer.
func (s *Subscription) drain() {
	defer close(s.drained)
	for {
		n, ok := <-s.l.Notify
		if !ok {
			s.fail(errors.New("the listener stopped"))
			return
		}
		s.handle(n)
		s.signal()
	}
}

// handle classifies one message from the Listener: nil (lib/pq re-connected
// and re-listened; anything may have been lost) is a Resync; a change of
// our table is a hint; our own probes only count as activity; anything else
// is dropped and counted. It logs after releasing the lock, so a slow log
// handler never holds up Next.
func (s *Subscription) handle(n *libpq.Notification) {
	dropped, overflow := s.classify(n)
	if dropped != "" {
		s.ignored.Add(1)
		s.b.log.Debug("jobwatch/pq: notification ignored", "channel", n.Channel, "reason", dropped,
			"payload_bytes", len(n.Extra))
	}
	if overflow {
		s.overflows.Add(1)
		s.b.log.Warn("jobwatch/pq: notification buffer full; collapsed into one resync",
			"application_name", s.appName, "size", s.max)
	}
}

// classify files n under s.mu and says why it was dropped ("" if it was
// not) and whether the buffer overflowed.
func (s *Subscription) classify(n *libpq.Notification) (dropped string, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.activity++
	if n == nil {
		return "", s.push(jobwatch.Notification{Resync: true})
	}
	if n.Channel != s.b.names.Channel {
		return "other channel", false
	}
	ev, err := notify.Parse(n.Extra)
	if err != nil {
		return err.Error(), false
	}
	switch ev.Kind {
	case notify.TableChanged:
		if ev.Table != "" && ev.Table != s.b.names.Queue {
			return "another table", false
		}
		return "", s.push(jobwatch.Notification{})
	case notify.HealthCheck:
		if _, ours := s.probes[ev.ProbeID]; ours {
			delete(s.probes, ev.ProbeID)
			return "", false
		}
	}
	return "event type " + ev.Type, false
}

// push appends to the buffer (s.mu is held) and reports an overflow. A
// Resync makes everything before it redundant; a full buffer collapses into
// one Resync.
func (s *Subscription) push(n jobwatch.Notification) (overflow bool) {
	switch {
	case n.Resync:
		clear(s.queue)
		s.queue = append(s.queue[:0], n)
	case len(s.queue) >= s.max:
		clear(s.queue)
		s.queue = append(s.queue[:0], jobwatch.Notification{Resync: true})
		return true
	default:
		s.queue = append(s.queue, n)
	}
	return false
}

// signal wakes Next without ever blocking.
func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// onEvent is lib/pq's event callback. It runs on the Listener's dispatching
// goroutine, so it only records and signals.
func (s *Subscription) onEvent(ev libpq.ListenerEventType, err error) {
	switch ev {
	case libpq.ListenerEventConnected:
		s.mu.Lock()
		s.connected = true
		s.mu.Unlock()
	case libpq.ListenerEventConnectionAttemptFailed:
		s.mu.Lock()
		connected := s.connected
		s.mu.Unlock()
		if !connected {
			select {
			case s.connFail <- err:
			default:
			}
		}
		s.fail(fmt.Errorf("connection attempt failed: %w", err))
	case libpq.ListenerEventDisconnected:
		s.fail(fmt.Errorf("connection lost: %w", err))
	case libpq.ListenerEventReconnected:
		// A nil notification follows; the subscription has failed already.
	}
}

// fail records the first error that ends the subscription and wakes Next.
func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.dead != nil || s.closed {
		s.mu.Unlock()
		return
	}
	s.dead = s.b.dsn.redactErr(fmt.Errorf("jobwatch/pq: listener %s: %w", s.appName, err))
	dead, live := s.dead, s.connected
	s.mu.Unlock()
	if live { // a failing Listen reports its error to its caller instead
		s.b.log.Warn("jobwatch/pq: listener failed", "application_name", s.appName,
			"channel", s.b.names.Channel, "err", dead)
	}
	s.signal()
}

func (s *Subscription) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// lookupPID reads the listening connection's server pid by its
// application_name (best effort: 0 when it cannot).
func (s *Subscription) lookupPID(ctx context.Context) uint32 {
	var pid int64
	err := s.poolCall(ctx, pidTimeout, func(ctx context.Context) error {
		return s.b.db.QueryRowxContext(ctx, pgschema.ListenerPIDSQL, s.appName).Scan(&pid)
	})
	if err != nil {
		s.b.log.Debug("jobwatch/pq: listener pid unknown", "application_name", s.appName,
			"err", s.b.dsn.redactErr(err))
		return 0
	}
	return uint32(pid)
}

// poolCall runs fn, a query through the caller's pool, bounded by timeout,
// ctx and Close. lib/pq honours a cancelled context by asking the server to
// cancel the query and then still waits for its reply, which never comes
// over a half-open connection; so fn runs in a goroutine of its own and a
// stuck query is abandoned (it ends when its connection does).
func (s *Subscription) poolCall(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSubscriptionClosed
	}
	s.pool.Add(1)
	s.mu.Unlock()
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(s.closing, cancel)
	res := make(chan error, 1)
	go func() {
		defer s.pool.Done()
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
		if s.closing.Err() != nil {
			return ErrSubscriptionClosed
		}
		return fmt.Errorf("no reply within %v", timeout)
	}
}

// Close implements jobwatch.Subscription: it makes a blocked Next return,
// closes the Listener and its connection, and waits for the goroutines it
// started. lib/pq's Close can block (it takes a lock that a stuck Listen,
// Ping or connection attempt holds), so it runs in a goroutine; after a
// short grace the sockets are shut under it, which unblocks all of them.
// Close is idempotent and returns within a few seconds whatever the network
// does; it returns an error only if some goroutine still had not ended
// then.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.stopAll()
	s.mu.Unlock()
	defer s.b.subs.Remove(s)

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = s.l.Close()
	}()
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	select {
	case <-closed:
	case <-grace.C:
	}
	// Refuse new connections and shut the open ones: whatever lib/pq is
	// blocked on (a read, a reply, a dial) fails now.
	s.dialer.shutdown()

	helpers := make(chan struct{})
	go func() {
		defer close(helpers)
		s.helpers.Wait()
	}()
	deadline := time.NewTimer(closeTimeout)
	defer deadline.Stop()
	for _, ch := range []<-chan struct{}{closed, s.drained, helpers} {
		select {
		case <-ch:
		case <-deadline.C:
			s.b.log.Warn("jobwatch/pq: listener did not stop in time", "application_name", s.appName)
			return fmt.Errorf("jobwatch/pq: close: listener goroutines still running after %v", closeTimeout)
		}
	}
	// Queries through the caller's pool were cancelled; they end at once
	// unless their connection is stuck, which is the pool's business.
	queries := make(chan struct{})
	go func() {
		defer close(queries)
		s.pool.Wait()
	}()
	grace.Reset(closeGrace)
	select {
	case <-queries:
	case <-grace.C:
		s.b.log.Debug("jobwatch/pq: a health probe or pid query is stuck on a pool connection",
			"application_name", s.appName)
	}
	return nil
}

// dialer is the Listener's dialer. It remembers the connections it made so
// that Close can shut them under lib/pq, and refuses to dial after that.
type dialer struct {
	d      net.Dialer
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var errDialerClosed = errors.New("jobwatch/pq: subscription closed")

func newDialer() *dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{ctx: ctx, cancel: cancel, conns: map[*trackedConn]struct{}{}}
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
	delete(c.d.conns, c)
	c.d.mu.Unlock()
	return c.Conn.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
