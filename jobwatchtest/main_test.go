package jobwatchtest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every backend and Watcher New makes is closed by its cleanup: goleak
// fails the run if a goroutine is left over.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
