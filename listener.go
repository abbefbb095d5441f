package jobwatch

import (
	"context"
	"errors"
	"time"
)

// runListener keeps one subscription alive: Listen, ask for a full read
// (changes made before the subscription was live are only visible that
// way), consume notifications, and on failure reconnect with backoff.
func (w *Watcher) runListener(ctx context.Context) {
	if w.cfg.pollOnly {
		return
	}
	attempt := 0
	for first := true; ctx.Err() == nil; {
		sub, err := w.listen(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrListenUnsupported) {
				w.goPollOnly(err)
				return
			}
			attempt++
			w.noteListenError("jobwatch: listen failed", err, attempt)
			if !sleepCtx(ctx, backoff(attempt, w.cfg.backoffMin, w.cfg.backoffMax)) {
				return
			}
			continue
		}
		if !w.attach(sub, first) {
			_ = sub.Close()
			return
		}
		first = false
		started := time.Now()
		err = w.consume(ctx, sub)
		w.detach(sub)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > w.cfg.backoffMax {
			attempt = 0 // it was healthy for a while: reconnect fast
		}
		attempt++
		w.noteListenError("jobwatch: subscription lost", err, attempt)
		if !sleepCtx(ctx, backoff(attempt, w.cfg.backoffMin, w.cfg.backoffMax)) {
			return
		}
	}
}

// listen is one Listen call, bounded by the call timeout: a pool can hand
// out a connection that went silently dead, and LISTEN on it never ends.
func (w *Watcher) listen(ctx context.Context) (Subscription, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.callTimeout)
	defer cancel()
	return w.driver.Listen(ctx)
}

// consume turns notifications into read requests until the subscription
// fails or ctx ends.
func (w *Watcher) consume(ctx context.Context, sub Subscription) error {
	for {
		n, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.stats.Notifications++
		now := time.Now()
		switch {
		case n.Resync:
			w.sched.markAll(causeResync)
		case len(n.IDs) > 0:
			for _, id := range n.IDs {
				if w.pending[id] != nil {
					w.sched.markID(id, causeNotification)
				}
			}
			w.sched.request(now, w.cfg.debounce, false)
		case w.wantFeed():
			w.sched.markFeed(causeNotification)
			w.sched.request(now, w.cfg.debounce, false)
		default:
			// Few waiters: reading them by id is cheaper. The feed's cursor
			// would go stale meanwhile, so it starts afresh when next used.
			for id := range w.pending {
				w.sched.markID(id, causeNotification)
			}
			w.sched.dropCursor = w.feed != nil
			w.sched.request(now, w.cfg.debounce, false)
		}
		w.mu.Unlock()
		w.wakeScheduler()
	}
}

// attach makes sub the live subscription and asks for an immediate full
// read. It returns false if the Watcher was closed meanwhile.
func (w *Watcher) attach(sub Subscription, first bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.sub = sub
	w.listenErr = nil
	if !first {
		w.stats.Reconnects++
	}
	w.sched.markAll(causeResync)
	w.wakeScheduler()
	return true
}

// detach closes sub and keeps its count of ignored notifications.
func (w *Watcher) detach(sub Subscription) {
	w.mu.Lock()
	if w.sub == sub {
		w.sub = nil
	}
	if ic, ok := sub.(IgnoredCounter); ok {
		w.ignoredGone += ic.Ignored()
	}
	w.mu.Unlock()
	_ = sub.Close()
}

func (w *Watcher) noteListenError(msg string, err error, attempt int) {
	w.mu.Lock()
	w.stats.ListenErrors++
	w.listenErr = err
	w.mu.Unlock()
	w.recordError(msg, err, "attempt", attempt)
}

func (w *Watcher) goPollOnly(err error) {
	w.mu.Lock()
	w.stats.PollOnly = true
	w.mu.Unlock()
	w.cfg.logger.Info("jobwatch: driver cannot listen; running on the poll alone",
		"refresh", w.cfg.refresh, "reason", err)
}

// sleepCtx waits d; it returns false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
