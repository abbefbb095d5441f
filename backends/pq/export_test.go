package pq

import libpq "github.com/lib/pq"

// Test hooks, compiled into the package's tests only.

// SetBufferSize shrinks the buffer of subscriptions opened afterwards.
func (b *Backend) SetBufferSize(n int) { b.bufferSize = n }

// Overflows counts how often the buffer collapsed into a Resync.
func (s *Subscription) Overflows() uint64 { return s.c.overflows.Load() }

// Activity counts the messages the drain goroutine has received.
func (s *Subscription) Activity() uint64 {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.activity
}

// Buffered is the number of undelivered notifications.
func (s *Subscription) Buffered() int {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return len(s.c.queue)
}

// Redact exposes the DSN redaction for tests.
func (b *Backend) Redact(s string) string { return b.dsn.redact(s) }

// ListenerDSN returns the DSN a subscription with the given tag would use.
func (b *Backend) ListenerDSN(tag string) string {
	return b.dsn.withAppName(b.dsn.listenerAppName(tag))
}

// Deliver feeds n to the subscription as if the Listener had sent it (nil:
// lib/pq's "reconnected" marker).
func (s *Subscription) Deliver(n *libpq.Notification) {
	s.c.handle(n)
}
