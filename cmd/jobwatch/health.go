package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
)

// healthTiming is how often a wait looks at the Watcher's health, and how
// often it repeats that the database is still failing.
type healthTiming struct {
	check, repeat time.Duration
}

var defaultHealthTiming = healthTiming{check: time.Second, repeat: time.Minute}

// health watches a Watcher's Stats().Failing during a wait, so that a
// database that cannot be read never makes the command hang silently: it
// says what is failing at once, again every timing.repeat while it still
// fails, and once when reads work again. When the queue turns out not to
// be installed it stops the wait with that error.
type health struct {
	w              *jobwatch.Watcher
	timing         healthTiming
	checkInstalled func(context.Context) error // nil: not checked
	stop           context.CancelCauseFunc
	say            func(msg string)

	failing bool
	said    time.Time
}

// start watches until ctx ends or the returned function is called.
func (h *health) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.timing.check)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				h.look(ctx, time.Now())
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// look checks the Watcher's health once.
func (h *health) look(ctx context.Context, now time.Time) {
	err := h.w.Stats().Failing
	switch {
	case err == nil && h.failing:
		h.failing = false
		h.say("the database can be read again")
	case err == nil:
	case h.failing && now.Sub(h.said) < h.timing.repeat:
	case h.notInstalled(ctx, err):
	default:
		h.failing, h.said = true, now
		h.say("still waiting; the database cannot be read: " + oneLine(err))
	}
}

// notInstalled reports whether err, or a check of the installation made
// because of it, says the queue is not installed, and then stops the wait.
func (h *health) notInstalled(ctx context.Context, err error) bool {
	if !errors.Is(err, jobwatch.ErrNotInstalled) && h.checkInstalled != nil {
		if cerr := h.checkInstalled(ctx); errors.Is(cerr, jobwatch.ErrNotInstalled) {
			err = cerr
		}
	}
	if !errors.Is(err, jobwatch.ErrNotInstalled) {
		return false
	}
	var db *dbError
	if !errors.As(err, &db) {
		err = &dbError{err}
	}
	h.stop(err)
	return true
}
