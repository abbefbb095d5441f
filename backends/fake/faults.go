package fake

import (
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

// faults are the pending fault injections. They are guarded by Backend.mu.
type faults struct {
	drop, dup   int           // commits left to drop / duplicate
	delay       time.Duration // delivery delay of new commits
	failReads   int
	readErr     error
	failListens int
	listenErr   error
}

// takeCommit returns how many times a commit is delivered to each
// subscription: 0 while dropping, 2 while duplicating, else 1. Dropping
// wins when both are pending; only the one applied is consumed.
func (f *faults) takeCommit() int {
	switch {
	case f.drop > 0:
		f.drop--
		return 0
	case f.dup > 0:
		f.dup--
		return 2
	}
	return 1
}

func (f *faults) takeRead() error {
	if f.failReads <= 0 {
		return nil
	}
	f.failReads--
	return f.readErr
}

func (f *faults) takeListen() error {
	if f.failListens <= 0 {
		return nil
	}
	f.failListens--
	return f.listenErr
}

// DropNotifications makes the next n commits that change something notify
// nobody, as if the notifications were lost in transit. It replaces any
// count still pending; n <= 0 cancels it. It never blocks.
func (b *Backend) DropNotifications(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.drop = max(n, 0)
}

// DuplicateNotifications makes the next n commits that change something
// notify every subscription twice. It replaces any count still pending;
// n <= 0 cancels it. A commit that DropNotifications drops does not use up
// a duplicate. It never blocks.
func (b *Backend) DuplicateNotifications(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.dup = max(n, 0)
}

// DelayNotifications makes every commit from now on reach each subscription
// d after it commits (d <= 0 restores immediate delivery; commits already
// made keep their delay). Pending deliveries run on timers, which Close of
// the subscription or of the Backend, and Disconnect, cancel: none outlives
// them. It never blocks.
func (b *Backend) DelayNotifications(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.delay = max(d, 0)
}

// FailReads makes the next n FetchStatuses calls that have ids fail with an
// error wrapping err (ErrInjected when err is nil). It replaces any count
// still pending; n <= 0 cancels it. It never blocks.
func (b *Backend) FailReads(n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.failReads, b.faults.readErr = max(n, 0), err
}

// FailListens makes the next n Listen calls fail with an error wrapping err
// (ErrInjected when err is nil). It replaces any count still pending;
// n <= 0 cancels it. It never blocks.
func (b *Backend) FailListens(n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.failListens, b.faults.listenErr = max(n, 0), err
}

// Disconnect drops the connection of every live subscription: their Next
// returns an error matching ErrDisconnected at once, and whatever they had
// buffered or pending is lost, as a real connection loss loses it. Listen
// keeps working, so a client can reconnect (and must then re-read
// statuses). It returns once no delivery to those subscriptions is running.
func (b *Backend) Disconnect() {
	b.mu.Lock()
	subs := b.takeSubsLocked()
	if len(subs) > 0 {
		b.broadcastLocked()
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.shutdown(ErrDisconnected, false)
	}
}

// Notify delivers a raw NOTIFY payload to every live subscription, as
// PostgreSQL would deliver it on the channel. Each subscription parses it
// with the shared payload parser: a table_changed_event becomes an empty
// jobwatch.Notification; other event types and malformed payloads are
// dropped and counted by the subscription's Ignored. The commit faults
// (drop, duplicate, delay) do not apply, and nothing counts as a commit. It
// never blocks.
func (b *Backend) Notify(payload string) {
	ev, err := notify.Parse(payload)
	understood := err == nil && ev.Kind == notify.TableChanged
	b.mu.Lock()
	subs := b.liveSubsLocked()
	b.mu.Unlock()
	for _, s := range subs {
		if understood {
			s.deliver(jobwatch.Notification{})
		} else {
			s.ignore()
		}
	}
}

// InjectGarbage sends n malformed payloads through Notify: broken or
// non-object JSON, a missing or non-string "type", a known type with a
// field of the wrong type, an oversized payload, random bytes. Every one is
// ignored by every live subscription. n <= 0 does nothing. It never blocks.
func (b *Backend) InjectGarbage(n int) {
	for i := range max(n, 0) {
		b.Notify(garbage(i))
	}
}

// BlockReads makes FetchStatuses calls that start from now on block (after
// their snapshot, see FetchStatuses) until release is called, their ctx is
// done or the Backend is closed; calls already running are not affected.
// Reads stay blocked until every release of overlapping BlockReads calls
// has been called. release is idempotent and safe for concurrent use;
// neither blocks.
func (b *Backend) BlockReads() (release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gate == nil {
		b.gate = &gate{open: make(chan struct{})}
	}
	g := b.gate
	g.holds++
	released := false
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if released {
			return
		}
		released = true
		g.holds--
		if g.holds == 0 {
			close(g.open)
			if b.gate == g {
				b.gate = nil
			}
		}
	}
}

// gate holds reads while open is not closed. Guarded by Backend.mu.
type gate struct {
	open  chan struct{}
	holds int
}
