package jobwatch_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// forever is a FailReads count no test outlives.
const forever = 1 << 30

// Invariant 9: a wait that ends with its ctx says what was last known of
// the job and of the database, and still matches ctx.Err().
func TestWaitErrorSaysWhy(t *testing.T) {
	errRefused := syscall.ECONNREFUSED
	errDenied := errors.New(`ERROR: permission denied for table pgqueuer_log (SQLSTATE 42501)`)
	tests := []struct {
		name      string
		setup     func(t *testing.T, env *waitEnv)
		wantState statemachine.State
		wantErr   error // matched in DriverErr; nil: none
	}{
		{"queued, database fine", func(*testing.T, *waitEnv) {}, statemachine.Queued, nil},
		{"picked, database fine", func(t *testing.T, e *waitEnv) { mustApply(t, e.b, claim, e.id) }, statemachine.Picked, nil},
		{"held at the deadline", func(t *testing.T, e *waitEnv) { mustApply(t, e.b, hold, e.id) }, statemachine.Failed, nil},
		{"unreachable database", func(t *testing.T, e *waitEnv) {
			e.b.FailReads(forever, errRefused)
			e.b.Disconnect()
			e.b.FailListens(forever, errRefused)
		}, statemachine.None, errRefused}, // this wait's reads all failed
		{"revoked SELECT", func(t *testing.T, e *waitEnv) { e.b.FailReads(forever, errDenied) }, statemachine.None, errDenied},
		{"dropped listening connection", func(t *testing.T, e *waitEnv) {
			e.b.Disconnect()
			e.b.FailListens(forever, errRefused)
		}, statemachine.Queued, errRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				env := newWaitEnv(t)
				tt.setup(t, env)
				advance(time.Minute) // reads (and failures) go on meanwhile
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err := env.w.Wait(ctx, env.id)
				var we *jobwatch.WaitError
				if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want a WaitError matching context.DeadlineExceeded", err)
				}
				if we.ID != env.id || we.LastState != tt.wantState {
					t.Errorf("WaitError = %+v, want job %d last seen %s", we, env.id, tt.wantState)
				}
				switch {
				case tt.wantErr == nil && we.DriverErr != nil:
					t.Errorf("DriverErr = %v while the database worked", we.DriverErr)
				case tt.wantErr != nil && !errors.Is(we.DriverErr, tt.wantErr):
					t.Errorf("err = %v, want it to carry %v", err, tt.wantErr)
				}
				if tt.wantErr != nil && !strings.Contains(err.Error(), tt.wantErr.Error()) {
					t.Errorf("message %q does not say why", err)
				}
				if f := env.w.Stats().Failing; !errors.Is(f, tt.wantErr) || (f == nil) != (tt.wantErr == nil) {
					t.Errorf("Stats().Failing = %v, want %v", f, tt.wantErr)
				}
			})
		})
	}
}

// waitEnv is a watcher with one job, enqueued and read once.
type waitEnv struct {
	b  *fake.Backend
	w  *jobwatch.Watcher
	id jobwatch.JobID
}

func newWaitEnv(t *testing.T) *waitEnv {
	b := newFake(t)
	w := newWatcher(t, b, jobwatch.WithBackoff(time.Second, 5*time.Second))
	ids := mustEnqueue(t, b, 1)
	listening(t, w)
	// A first wait reads the job once, so its state is known.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = w.Wait(ctx, ids[0])
	return &waitEnv{b: b, w: w, id: ids[0]}
}

// A queue that is not installed ends its waits with ErrNotInstalled at the
// not-found grace, naming what was looked for; a permission error does not.
func TestNotInstalledEndsWaitsAtTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		missing := &jobwatch.NotInstalledError{Prefix: "typo_", Err: errors.New(`relation "typo_pgqueuer_log" does not exist`)}
		b.FailReads(forever, missing)
		w := newWatcher(t, b, jobwatch.WithNotFoundGrace(10*time.Second), jobwatch.WithBackoff(time.Second, time.Minute))
		start := time.Now()
		_, err := w.Wait(context.Background(), 1)
		if !errors.Is(err, jobwatch.ErrNotInstalled) {
			t.Fatalf("err = %v, want ErrNotInstalled", err)
		}
		if took := time.Since(start); took != 10*time.Second {
			t.Errorf("ended after %s, want at the grace (10s), even though reads back off for a minute", took)
		}
		if !strings.Contains(err.Error(), `prefix "typo_"`) || !strings.Contains(err.Error(), "search_path") {
			t.Errorf("message %q does not name the prefix and schema", err)
		}
		if s := w.Stats(); s.NotInstalled != 1 || s.NotFound != 0 {
			t.Errorf("stats = %+v", s)
		}

		states, err := w.WaitAll(context.Background(), []jobwatch.JobID{1, 2})
		var ue *jobwatch.UnsettledError
		if !errors.As(err, &ue) || len(ue.Jobs) != 2 || !errors.Is(err, jobwatch.ErrNotInstalled) || states[0] != statemachine.None {
			t.Errorf("WaitAll = %v, %v; want an UnsettledError for both, matching ErrNotInstalled", states, err)
		}
		n := 0
		for st, err := range w.WaitEach(context.Background(), []jobwatch.JobID{1, 2, 3}) {
			n++
			if !errors.Is(err, jobwatch.ErrNotInstalled) {
				t.Errorf("WaitEach: %v %v, want ErrNotInstalled", st, err)
			}
		}
		if n != 3 {
			t.Errorf("WaitEach yielded %d pairs, want one per job", n)
		}
	})
}

// A permission error may be fixed by a grant: it keeps the wait going.
func TestPermissionErrorKeepsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		ids := mustEnqueue(t, b, 1)
		mustApply(t, b, succeed, ids[0])
		b.FailReads(20, errors.New("permission denied (SQLSTATE 42501)"))
		w := newWatcher(t, b, jobwatch.WithNotFoundGrace(time.Second), jobwatch.WithBackoff(time.Second, 2*time.Second))
		st, err := w.Wait(context.Background(), ids[0])
		if err != nil || st != statemachine.Successful {
			t.Fatalf("Wait = %s, %v; want it to outlast the failures", st, err)
		}
	})
}

// WaitAll, WaitAny and WaitEach say the same per job when ctx ends.
func TestMultiWaitsSayWhyPerJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithNotFoundGrace(time.Hour))
		ids := mustEnqueue(t, b, 3)
		mustApply(t, b, succeed, ids[0])
		mustApply(t, b, hold, ids[1])
		in := []jobwatch.JobID{ids[0], ids[1], ids[2], 99}
		want := map[jobwatch.JobID]statemachine.State{ids[1]: statemachine.Failed, ids[2]: statemachine.Queued, 99: statemachine.None}
		check := func(what string, jobs []*jobwatch.WaitError) {
			t.Helper()
			if len(jobs) != 3 {
				t.Fatalf("%s: %d unsettled jobs, want 3: %v", what, len(jobs), jobs)
			}
			for _, j := range jobs {
				if j.LastState != want[j.ID] || !errors.Is(j, context.DeadlineExceeded) {
					t.Errorf("%s: job %d: %+v, want last seen %s", what, j.ID, j, want[j.ID])
				}
			}
		}
		ctx := func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			return ctx
		}

		states, err := w.WaitAll(ctx(), in)
		var ue *jobwatch.UnsettledError
		if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) || states[0] != statemachine.Successful {
			t.Fatalf("WaitAll = %v, %v", states, err)
		}
		check("WaitAll", ue.Jobs)

		var each []*jobwatch.WaitError
		for st, err := range w.WaitEach(ctx(), in) {
			var we *jobwatch.WaitError
			switch {
			case err == nil && st.ID == ids[0]:
			case errors.As(err, &we) && st.ID == we.ID && st.State == we.LastState:
				each = append(each, we)
			default:
				t.Errorf("WaitEach yielded %v, %v", st, err)
			}
		}
		check("WaitEach", each)

		_, err = w.WaitAny(ctx(), in[1:])
		if !errors.As(err, &ue) {
			t.Fatalf("WaitAny err = %v, want an UnsettledError", err)
		}
		check("WaitAny", ue.Jobs)
	})
}

// Stats.Failing holds the driver error only while reads fail; LastError
// keeps it after they work again.
func TestStatsFailingClearsOnRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFake(t)
		w := newWatcher(t, b, jobwatch.WithBackoff(time.Second, time.Second))
		ids := mustEnqueue(t, b, 1)
		listening(t, w)
		errDenied := errors.New("permission denied")
		b.FailReads(2, errDenied)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, _ = w.Wait(ctx, ids[0])
		}()
		advance(500 * time.Millisecond) // the wait's first read, not yet its retry
		if f := w.Stats().Failing; !errors.Is(f, errDenied) {
			t.Fatalf("Stats().Failing = %v while reads fail, want %v", f, errDenied)
		}
		advance(10 * time.Second) // the retries after the backoff work
		s := w.Stats()
		if s.Failing != nil || !errors.Is(s.LastError, errDenied) {
			t.Fatalf("after recovery Failing = %v, LastError = %v; want nil and %v", s.Failing, s.LastError, errDenied)
		}
		mustApply(t, b, succeed, ids[0])
		synctest.Wait()
	})
}
