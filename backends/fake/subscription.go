package fake

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
)

// subscription is one live Listen of a Backend. Next is meant for one
// goroutine at a time (concurrent callers are safe, they just share the
// notifications); Close, Ignored and every delivery are safe concurrently
// with it.
type subscription struct {
	b       *Backend
	limit   int           // buffer size
	ready   chan struct{} // capacity 1: something was buffered
	done    chan struct{} // closed when the subscription ends
	ignored atomic.Uint64

	mu       sync.Mutex
	buf      []jobwatch.Notification
	resync   bool  // an overflow owes a Resync; only set while buf is full
	resyncs  int   // Resyncs in buf
	closed   bool  // closed by its owner
	err      error // why it ended; nil while live
	timers   map[uint64]*time.Timer
	timerSeq uint64
	inflight sync.WaitGroup // scheduled delayed deliveries
}

func newSubscription(b *Backend, limit int) *subscription {
	return &subscription{
		b:      b,
		limit:  limit,
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
		timers: make(map[uint64]*time.Timer),
	}
}

// Next returns the oldest buffered notification, blocking until there is
// one, ctx is done (ctx.Err()), the owner closes the subscription (an error
// matching ErrSubscriptionClosed), the connection is lost (ErrDisconnected;
// buffered notifications are lost with it) or the Backend is closed
// (ErrClosed). After an error other than ctx's, every call fails the same
// way.
func (s *subscription) Next(ctx context.Context) (jobwatch.Notification, error) {
	if err := checkCtx(ctx); err != nil {
		return jobwatch.Notification{}, err
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return jobwatch.Notification{}, fmt.Errorf("fake: next: %w", ErrSubscriptionClosed)
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return jobwatch.Notification{}, fmt.Errorf("fake: next: %w", err)
		}
		if len(s.buf) > 0 {
			n := s.buf[0]
			s.buf[0] = jobwatch.Notification{}
			s.buf = s.buf[1:]
			if n.Resync {
				s.resyncs--
			}
			if s.resync {
				s.resync = false
				s.resyncs++
				s.buf = append(s.buf, jobwatch.Notification{Resync: true})
			}
			if len(s.buf) > 0 {
				s.signal()
			}
			s.mu.Unlock()
			return n, nil
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-s.done:
		case <-ctx.Done():
			return jobwatch.Notification{}, ctx.Err()
		}
	}
}

// Close ends the subscription: a blocked Next returns an error matching
// ErrSubscriptionClosed and delayed notifications still pending for it are
// cancelled. It is idempotent, always returns nil, and returns once no
// delivery to the subscription is running.
func (s *subscription) Close() error {
	s.b.unregister(s)
	s.shutdown(ErrSubscriptionClosed, true)
	return nil
}

// Ignored returns how many payloads the subscription dropped because they
// were not table_changed_event notifications: other event types and
// malformed payloads (see Backend.Notify). It implements
// jobwatch.IgnoredCounter and never blocks.
func (s *subscription) Ignored() uint64 { return s.ignored.Load() }

// shutdown ends the subscription for reason (the first reason sticks), drops
// what it buffered, cancels its timers and waits for running deliveries.
// The caller must not hold Backend.mu.
func (s *subscription) shutdown(reason error, byOwner bool) {
	s.mu.Lock()
	if byOwner {
		s.closed = true
	}
	if s.err == nil {
		s.err = reason
		close(s.done)
	}
	s.buf, s.resync, s.resyncs = nil, false, 0
	timers := s.timers
	s.timers = make(map[uint64]*time.Timer)
	s.mu.Unlock()
	for _, t := range timers {
		if t.Stop() {
			s.inflight.Done()
		}
	}
	s.inflight.Wait()
}

// send delivers n now, or after d when d > 0. It never blocks.
func (s *subscription) send(n jobwatch.Notification, d time.Duration) {
	if d <= 0 {
		s.deliver(n)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	key := s.timerSeq
	s.timerSeq++
	s.inflight.Add(1)
	// The callback needs s.mu, which is held until the timer is recorded.
	s.timers[key] = time.AfterFunc(d, func() {
		defer s.inflight.Done()
		s.mu.Lock()
		_, live := s.timers[key]
		delete(s.timers, key)
		s.mu.Unlock()
		if live {
			s.deliver(n)
		}
	})
}

// deliver buffers n, or, when the buffer is full, collapses it into the one
// Resync the subscription then owes. A Resync already buffered covers it
// too: the re-read it triggers happens after n's commit. deliver never
// blocks and does nothing once the subscription has ended.
func (s *subscription) deliver(n jobwatch.Notification) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	collapsed := len(s.buf) >= s.limit
	if collapsed {
		if s.resyncs == 0 {
			s.resync = true
		}
	} else {
		s.buf = append(s.buf, n)
		s.signal()
	}
	s.mu.Unlock()
	s.b.sent.Add(1)
	if collapsed {
		s.b.collapsed.Add(1)
	}
}

// ignore counts one payload the subscription did not understand.
func (s *subscription) ignore() {
	s.mu.Lock()
	live := s.err == nil
	s.mu.Unlock()
	if live {
		s.ignored.Add(1)
	}
}

// signal wakes a waiting Next without blocking. s.mu is held.
func (s *subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
