// Package listener is the listening policy the PostgreSQL backends share:
// which notifications are hints, the end-to-end health probe and its ids,
// half-open detection, the reconnect and resync signalling, when a
// subscription is dead, and the bounded Close. A backend supplies only its
// listening connection, through Conn, and the probe's send through its pool.
package listener

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

// maxProbes is how many outstanding probe ids a Filter remembers.
const maxProbes = 8

// Event is what a Conn received.
type Event int

const (
	// Activity is traffic that is not a hint (an ignored notification,
	// one of our probes): it proves the connection alive.
	Activity Event = iota
	// Hint is a change of the queue's table.
	Hint
	// Resync says notifications may have been lost: the driver
	// re-established the connection, or its buffer overflowed.
	Resync
)

// Conn is a backend's listening connection.
type Conn interface {
	// Receive blocks until something arrives (classified with the
	// subscription's Filter), ctx ends or the connection fails. It is
	// called by one goroutine at a time.
	Receive(ctx context.Context) (Event, error)
	// Usable reports whether the connection survived the last Receive or
	// Ping that failed (one interrupted by its ctx, say).
	Usable() bool
	// Ping is a bounded round trip on the listening connection; it
	// honours ctx.
	Ping(ctx context.Context) error
	// Abort shuts the connection's socket(s) under whatever uses them, so
	// that a stuck Receive or Ping fails at once. It never blocks and is
	// safe concurrently with everything.
	Abort()
	// Close releases the connection and every goroutine the Conn started,
	// bounded. It is called once no Receive or Ping runs, at most twice
	// (after a failure, then by Close), and must be idempotent.
	Close() error
}

// Filter classifies notifications: a table_changed_event of the queue's
// table is a Hint, one of the subscription's own probes is Activity, and
// anything else is Activity too, counted as ignored. It is safe for
// concurrent use.
type Filter struct {
	channel, queue string
	log            *slog.Logger
	prefix         string
	ignored        atomic.Uint64

	mu     sync.Mutex
	probes map[string]struct{} // outstanding probe ids
}

// NewFilter returns a Filter for channel and queue (the queue table's
// unqualified name, as the trigger names it); log and prefix are for its
// debug lines.
func NewFilter(channel, queue string, log *slog.Logger, prefix string) *Filter {
	return &Filter{channel: channel, queue: queue, log: log, prefix: prefix, probes: map[string]struct{}{}}
}

// Classify files one notification.
func (f *Filter) Classify(channel, payload string) Event {
	why := f.drop(channel, payload)
	switch why {
	case "":
		return Hint
	case "own probe":
		return Activity
	}
	f.ignored.Add(1)
	f.log.Debug(f.prefix+": notification ignored", "channel", channel, "reason", why, "payload_bytes", len(payload))
	return Activity
}

// drop says why a notification is not a hint ("" when it is one).
func (f *Filter) drop(channel, payload string) string {
	if channel != f.channel {
		return "other channel"
	}
	ev, err := notify.Parse(payload)
	if err != nil {
		return err.Error()
	}
	switch ev.Kind {
	case notify.TableChanged:
		if ev.Table != "" && ev.Table != f.queue {
			return "another table"
		}
		return ""
	case notify.HealthCheck:
		f.mu.Lock()
		_, ours := f.probes[ev.ProbeID]
		delete(f.probes, ev.ProbeID)
		f.mu.Unlock()
		if ours {
			return "own probe"
		}
	}
	return "event type " + ev.Type
}

// Ignored counts the notifications Classify dropped (not our probes).
func (f *Filter) Ignored() uint64 { return f.ignored.Load() }

// newProbe remembers a fresh probe id and returns its payload.
func (f *Filter) newProbe() (payload string) {
	id := ProbeID()
	p, _ := json.Marshal(map[string]string{"type": notify.TypeHealthCheck, "id": id, "channel": f.channel})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.probes) >= maxProbes {
		clear(f.probes) // probes that never came back: the next check decides
	}
	f.probes[id] = struct{}{}
	return string(p)
}

// ProbeID returns a random id (hex), for probes and tags.
func ProbeID() string { return RandomHex(12) }

// RandomHex returns n random bytes, hex encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Config is one subscription's policy settings.
type Config struct {
	// Prefix starts log messages ("jobwatch/pgx").
	Prefix string
	// LogAttrs identify the connection in log lines ("pid", 123).
	LogAttrs []any
	Log      *slog.Logger
	// Health is the idle interval after which the connection is checked
	// end to end, and how long each step of the check may take; 0
	// disables the check.
	Health time.Duration
	// Probe sends payload on the channel through the backend's pool.
	Probe func(ctx context.Context, payload string) error
	// Filter is the Filter the Conn classifies with.
	Filter *Filter
	// ErrClosed is what Next returns after Close; ErrUnhealthy what a
	// failed health check wraps.
	ErrClosed, ErrUnhealthy error
	// Dead formats the error that ends the subscription.
	Dead func(err error) error
	// CloseGrace is how long Close waits for Next to let go of the
	// connection before it aborts it; CloseTimeout how long it then waits.
	CloseGrace, CloseTimeout time.Duration
	// OnClose runs at the end of the first Close (unregistering, say).
	OnClose func()
	// BeforeProbe, if set, runs with Next's ctx just before each health
	// probe is sent; an error counts as a probe that could not be sent.
	// For tests.
	BeforeProbe func(ctx context.Context) error
}

// Sub is one subscription under the shared policy. Next is used by one
// goroutine at a time; Close may be called from any goroutine at any time
// and interrupts a blocked Next.
type Sub struct {
	conn Conn
	cfg  Config

	// sem is held by whoever uses conn (Next, or Close once Next let go).
	sem chan struct{}

	closing context.Context // cancelled when Close begins
	stop    context.CancelFunc

	mu         sync.Mutex
	closed     bool
	closedDone chan struct{} // closed when the first Close has finished
	closeErr   error

	dead error // set (by the holder of sem, under mu) when the subscription failed
}

// New returns a subscription on conn, live already.
func New(conn Conn, cfg Config) *Sub {
	s := &Sub{conn: conn, cfg: cfg, sem: make(chan struct{}, 1), closedDone: make(chan struct{})}
	s.closing, s.stop = context.WithCancel(context.Background())
	return s
}

// Next returns a hint (an empty Notification) for each change of the
// queue's table, and a Resync when notifications may have been lost. While
// idle it checks the connection every health interval: it sends a probe
// through the pool and waits, up to the interval, for anything to arrive;
// if the probe cannot be sent it pings the listening connection instead. A
// failed check or a failed connection kills the subscription: Next returns
// an error, and keeps returning it. When ctx ends it returns ctx's error
// and the subscription stays usable. Once Close has begun, it returns
// ErrClosed, whatever a probe in flight found.
func (s *Sub) Next(ctx context.Context) (jobwatch.Notification, error) {
	select {
	case s.sem <- struct{}{}:
	case <-s.closing.Done():
		return jobwatch.Notification{}, s.cfg.ErrClosed
	case <-ctx.Done():
		return jobwatch.Notification{}, ctx.Err()
	}
	defer func() { <-s.sem }()
	s.mu.Lock()
	closed, dead := s.closed, s.dead
	s.mu.Unlock()
	switch {
	case closed:
		return jobwatch.Notification{}, s.cfg.ErrClosed
	case dead != nil:
		return jobwatch.Notification{}, dead
	}

	opCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()
	n, err := s.next(opCtx)
	if err == nil {
		return n, nil
	}
	return jobwatch.Notification{}, s.settle(ctx, err)
}

// settle decides what a failed next means, under mu so that Close, once
// begun, always wins.
func (s *Sub) settle(ctx context.Context, err error) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return s.cfg.ErrClosed
	case ctx.Err() != nil && s.conn.Usable():
		s.mu.Unlock()
		return ctx.Err()
	}
	s.dead = s.cfg.Dead(err)
	dead := s.dead
	s.mu.Unlock()
	s.cfg.Log.Warn(s.cfg.Prefix+": listener failed", append(s.cfg.LogAttrs, "err", dead)...)
	_ = s.conn.Close() // we hold sem: nobody else uses it
	return dead
}

// next waits for the next hint or resync, health-checking while idle.
func (s *Sub) next(ctx context.Context) (jobwatch.Notification, error) {
	for {
		ev, idle, err := s.receive(ctx)
		if err == nil {
			if n, ok := deliver(ev); ok {
				return n, nil
			}
			continue
		}
		if !idle {
			return jobwatch.Notification{}, err
		}
		n, ok, err := s.healthCheck(ctx)
		if err != nil {
			return jobwatch.Notification{}, err
		}
		if ok {
			return n, nil
		}
	}
}

// receive is one Receive bounded by the health interval; idle says it
// timed out on a connection still usable.
func (s *Sub) receive(ctx context.Context) (Event, bool, error) {
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if s.cfg.Health > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, s.cfg.Health)
	}
	defer cancel()
	ev, err := s.conn.Receive(waitCtx)
	idle := err != nil && ctx.Err() == nil && waitCtx.Err() != nil && s.conn.Usable()
	return ev, idle, err
}

func deliver(ev Event) (jobwatch.Notification, bool) {
	switch ev {
	case Hint:
		return jobwatch.Notification{}, true
	case Resync:
		return jobwatch.Notification{Resync: true}, true
	}
	return jobwatch.Notification{}, false
}

// healthCheck proves the connection alive end to end, PgQueuer style. It
// returns a notification to deliver when the first thing to arrive after
// the probe was one.
func (s *Sub) healthCheck(ctx context.Context) (jobwatch.Notification, bool, error) {
	timeout := s.cfg.Health
	payload := s.cfg.Filter.newProbe()
	var err error
	if s.cfg.BeforeProbe != nil {
		err = s.cfg.BeforeProbe(ctx)
	}
	if err == nil {
		sendCtx, cancel := context.WithTimeout(ctx, timeout)
		err = s.cfg.Probe(sendCtx, payload)
		cancel()
	}
	if err != nil {
		// The id stays known: a send that timed out may still have
		// notified, and the probe must not count as foreign when it comes.
		if ctx.Err() != nil {
			return jobwatch.Notification{}, false, ctx.Err()
		}
		s.cfg.Log.Debug(s.cfg.Prefix+": health probe not sent; pinging the listener instead", append(s.cfg.LogAttrs, "err", err)...)
		pingCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := s.conn.Ping(pingCtx); err != nil {
			if ctx.Err() != nil {
				return jobwatch.Notification{}, false, ctx.Err()
			}
			return jobwatch.Notification{}, false, fmt.Errorf("%w: ping: %w", s.cfg.ErrUnhealthy, err)
		}
		return jobwatch.Notification{}, false, nil
	}
	ev, idle, err := s.receive(ctx)
	if err != nil {
		if idle {
			return jobwatch.Notification{}, false, fmt.Errorf("%w: probe not received within %v", s.cfg.ErrUnhealthy, timeout)
		}
		return jobwatch.Notification{}, false, err
	}
	// Whatever arrived came over the socket just now: it is alive. A late
	// probe of ours is dropped silently when it comes.
	n, ok := deliver(ev)
	return n, ok, nil
}

// ErrStuck is wrapped by Close's error when Next did not let go of the
// connection even after it was aborted.
var ErrStuck = errors.New("jobwatch/listener: connection still in use after the close timeout")

// Close interrupts a blocked Next, waits (up to CloseGrace) for it to let
// go of the connection, aborts the connection if it did not, and closes
// it. It is idempotent: every call returns once the first has finished,
// with its result, within CloseGrace + CloseTimeout plus the Conn's own
// bounded Close.
func (s *Sub) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closedDone
		return s.closeErr
	}
	s.closed = true
	s.stop()
	s.mu.Unlock()
	defer close(s.closedDone)
	if s.cfg.OnClose != nil {
		defer s.cfg.OnClose()
	}

	grace := time.NewTimer(s.cfg.CloseGrace)
	defer grace.Stop()
	select {
	case s.sem <- struct{}{}:
	case <-grace.C:
		// Next is stuck despite the cancel: shut the socket under it.
		s.cfg.Log.Warn(s.cfg.Prefix+": listener did not stop in time; socket closed", s.cfg.LogAttrs...)
		s.conn.Abort()
		deadline := time.NewTimer(s.cfg.CloseTimeout)
		defer deadline.Stop()
		select {
		case s.sem <- struct{}{}:
		case <-deadline.C:
			s.closeErr = fmt.Errorf("%s: close: %w (%v)", s.cfg.Prefix, ErrStuck, s.cfg.CloseGrace+s.cfg.CloseTimeout)
			return s.closeErr
		}
	}
	// We own the connection now, for good.
	s.closeErr = s.conn.Close()
	return s.closeErr
}

// Ignored counts the notifications the subscription's Filter dropped.
func (s *Sub) Ignored() uint64 { return s.cfg.Filter.Ignored() }
