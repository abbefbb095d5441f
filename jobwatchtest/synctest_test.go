package jobwatchtest_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/jobwatchtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// In a synctest bubble time is virtual: the production timings (a 5 s
// poll, a 30 s grace) pass at once, and exactly, so these tests can assert
// the virtual durations. The Watcher needs no change for it.

// plain is what a test would write without jobwatchtest: fake.New and
// jobwatch.New with the production defaults, closed at cleanup.
func plain(t *testing.T) (*fake.Backend, *jobwatch.Watcher) {
	b := fake.New()
	t.Cleanup(func() { b.Close() })
	w, err := jobwatch.New(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return b, w
}

// TestSynctestProductionGrace: a plain fake.New and jobwatch.New, with the
// production defaults: the unknown id ends after exactly the 30 s grace
// (plus the debounce of the first read), of virtual time.
func TestSynctestProductionGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w := plain(t)
		start := time.Now()
		_, err := w.Wait(context.Background(), 42)
		elapsed := time.Since(start)
		if !errors.Is(err, jobwatch.ErrNotFound) {
			t.Fatalf("Wait(42) = %v, want ErrNotFound", err)
		}
		if elapsed < jobwatch.DefaultNotFoundGrace || elapsed > jobwatch.DefaultNotFoundGrace+jobwatch.DefaultRefreshInterval {
			t.Fatalf("ErrNotFound after %s of virtual time, want the %s grace", elapsed, jobwatch.DefaultNotFoundGrace)
		}
	})
}

// TestSynctestProductionPoll: notifications lost, the production 5 s poll
// resolves the wait.
func TestSynctestProductionPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, w := plain(t)
		ctx := context.Background()
		ids, _ := b.EnqueueN(ctx, 1)
		b.DropNotifications(2)
		go func() {
			// Once the wait's first read has started, and every goroutine
			// is blocked again, that read has seen the job queued: only
			// the poll can resolve it after.
			_ = b.WaitReads(ctx, 1)
			synctest.Wait()
			_ = b.Apply(ctx, statemachine.Claim, ids...)
			_ = b.Apply(ctx, statemachine.Complete, ids...)
		}()
		start := time.Now()
		st, err := w.Wait(ctx, ids[0])
		elapsed := time.Since(start)
		if err != nil || st != statemachine.Successful || w.Stats().Resolved.Poll != 1 {
			t.Fatalf("Wait = %s, %v (resolved %+v)", st, err, w.Stats().Resolved)
		}
		// The poll's period has a ±10% jitter.
		if elapsed < jobwatch.DefaultRefreshInterval*9/10 || elapsed > jobwatch.DefaultRefreshInterval*11/10 {
			t.Fatalf("resolved after %s of virtual time, want about the %s poll", elapsed, jobwatch.DefaultRefreshInterval)
		}
	})
}

// TestSynctestHelper: NewInBubble inside the bubble; its cleanup runs
// there too (synctest.Test would report goroutines left running
// otherwise). Options override its timings.
func TestSynctestHelper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, w := jobwatchtest.NewInBubble(t, jobwatch.WithNotFoundGrace(time.Hour))
		start := time.Now()
		if _, err := w.Wait(t.Context(), 42); !errors.Is(err, jobwatch.ErrNotFound) || time.Since(start) < time.Hour {
			t.Fatalf("Wait(42) = %v after %s, want ErrNotFound after the hour's grace", err, time.Since(start))
		}
		ids, _ := q.EnqueueN(t.Context(), 1)
		q.DelayNotifications(time.Minute) // each commit reaches the Watcher a minute late
		_ = q.Apply(t.Context(), statemachine.Cancel, ids...)
		if st, err := w.Wait(t.Context(), ids[0]); err != nil || st != statemachine.Canceled {
			t.Fatalf("Wait = %s, %v", st, err)
		}
	})
}

// TestSynctestOptionsOverrideTimings: New's options come after Timings.
func TestSynctestOptionsOverrideTimings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w := jobwatchtest.New(t, jobwatch.WithNotFoundGrace(time.Second))
		start := time.Now()
		if _, err := w.Wait(t.Context(), 42); !errors.Is(err, jobwatch.ErrNotFound) {
			t.Fatalf("Wait(42) = %v", err)
		}
		if d := time.Since(start); d < time.Second || d > time.Second+jobwatchtest.RefreshInterval {
			t.Fatalf("ErrNotFound after %s of virtual time, want the 1s grace", d)
		}
	})
}

// TestSynctestFakeClock: the fake's timestamps follow the bubble's clock,
// so a test can check a heartbeat's age exactly.
func TestSynctestFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := fake.New()
		defer q.Close()
		ctx := t.Context()
		_, _ = q.Enqueue(ctx, queue.NewJob{Entrypoint: "long", ExecuteAfter: time.Hour})
		if jobs, _ := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"long"}, Limit: 1}); len(jobs) != 0 {
			t.Fatalf("claimed %v before ExecuteAfter", jobs)
		}
		time.Sleep(time.Hour)
		jobs, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"long"}, Limit: 1})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("Claim after an hour = %v, %v", jobs, err)
		}
		time.Sleep(time.Minute)
		if err := q.Heartbeat(ctx, jobs[0].ID); err != nil {
			t.Fatal(err)
		}
		info, err := q.Inspect(ctx, jobs[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if age := info.Job.Heartbeat.Sub(jobs[0].Heartbeat); age != time.Minute {
			t.Fatalf("heartbeat moved by %s, want a minute", age)
		}
		// A read held by BlockReads blocks durably: synctest.Wait returns
		// once it is parked.
		release := q.BlockReads()
		read := make(chan error, 1)
		go func() {
			_, err := q.FetchStatuses(ctx, []jobwatch.JobID{jobs[0].ID})
			read <- err
		}()
		synctest.Wait()
		select {
		case err := <-read:
			t.Fatalf("read returned while blocked: %v", err)
		default:
		}
		release()
		if err := <-read; err != nil {
			t.Fatal(err)
		}
	})
}
