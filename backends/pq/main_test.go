package pq_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the backend starts (the drain, lib/pq's Listener and its
// connection goroutine, Ping and Listen helpers) must be gone when the tests
// end: Subscription.Close waits for them. No lib/pq goroutine is ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
