package reliability_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the Watcher, the backends, the pools and the proxy start
// must be gone when the suite ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
