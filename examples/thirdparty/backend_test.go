package main

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/conformance"
)

// The suite closes every Watcher it makes; goleak checks that this backend
// left no goroutine behind either.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness gives the suite the Driver under test and the backend's real
// write path: Enqueue and Apply, promoted from *Backend, each one commit.
type harness struct{ *Backend }

func (h harness) Driver() jobwatch.Driver { return h.Backend }

// BreakListener is optional (conformance.ListenerBreaker). With it the suite
// also checks that a Watcher recovers from a lost listening connection; a
// harness without it runs every other case and says which it did not run.
func (h harness) BreakListener(context.Context) error {
	h.Disconnect()
	return nil
}

// NotifyRaw is optional too (conformance.RawNotifier): it sends any payload
// on the notification channel, as pg_notify would. This backend has no
// payloads, so any notification is a plain hint, and that is always safe:
// it costs the Watcher a status read, never a wrong answer.
func (h harness) NotifyRaw(context.Context, string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notifyLocked()
	return nil
}

// OpenResources is optional as well (conformance.ResourceReporter): what
// the backend still holds. With it the suite checks after every case that
// closing the subscriptions released them. This backend has no
// connections, only its registered subscriptions.
func (h harness) OpenResources() conformance.Resources {
	h.mu.Lock()
	defer h.mu.Unlock()
	return conformance.Resources{Subscriptions: len(h.subs)}
}

var (
	_ conformance.ListenerBreaker  = harness{}
	_ conformance.RawNotifier      = harness{}
	_ conformance.ResourceReporter = harness{}
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Harness {
		// Fresh and isolated for every case. A database backend would
		// create a schema or prefix here and drop it with t.Cleanup.
		return harness{New()}
	})
}
