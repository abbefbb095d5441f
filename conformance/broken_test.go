package conformance_test

// The suite must be able to fail. Each broken backend below is the fake with
// one defect; TestBrokenBackendsAreReported runs the whole suite against it
// in a subprocess (this test binary, -test.run=^TestBrokenChild$) and
// asserts that the child fails, and fails the cases that check the broken
// rule.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/statemachine"
)

// brokenEnv selects the broken backend TestBrokenChild runs the suite on.
const brokenEnv = "JOBWATCH_CONFORMANCE_BROKEN"

type brokenBackend struct {
	name     string
	defect   string
	wrap     func(t *testing.T, h *fakeHarness) conformance.Harness
	wantFail []string // cases that must report the defect
	// wantOutput, if set, must appear in the suite's output: the failure
	// names what went wrong.
	wantOutput string
}

var brokenBackends = []brokenBackend{
	{
		name:   "deaf_and_stuck",
		defect: "subscriptions never deliver and whose status reads report every job as picked forever",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: &lyingDriver{Driver: h.b, deaf: true, state: statemachine.Picked}}
		},
		wantFail: []string{"01_terminal_states_resolve", "02_finished_before_wait", "03_listen_then_check_race", "13_driver_listen_is_live", "14_driver_fetch_statuses"},
	},
	{
		name:   "says_successful",
		defect: "status reads report every id, known or not, as successful",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: &lyingDriver{Driver: h.b, state: statemachine.Successful, inventIDs: true}}
		},
		wantFail: []string{"04_held_is_not_final", "05_not_found_after_grace", "12_spurious_notifications", "14_driver_fetch_statuses", "16_illegal_transitions_refused"},
	},
	{
		name:   "ignores_ctx",
		defect: "Next and FetchStatuses ignore their ctx",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: ctxIgnoringDriver{h.b}}
		},
		wantFail: []string{"13_driver_listen_is_live", "14_driver_fetch_statuses"},
	},
	{
		name:   "listen_not_live",
		defect: "Listen returns before the subscription is live (the first change after it is lost)",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: lateListenDriver{h.b}}
		},
		wantFail: []string{"13_driver_listen_is_live"},
	},
	{
		name:   "non_atomic_apply",
		defect: "Apply writes each id in its own transaction, so a batch with an illegal transition is half applied",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, perID: true}
		},
		wantFail: []string{"16_illegal_transitions_refused"},
	},
	{
		name:   "close_leaks",
		defect: "Subscription.Close returns nil and ends the subscription's Next, but never releases the backend's subscription",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: leakyDriver{h.b}}
		},
		wantFail:   []string{"01_terminal_states_resolve", "08_close_ends_waits", "13_driver_listen_is_live", "21_next_after_ctx_timeout"},
		wantOutput: "the backend still holds",
	},
	{
		name:   "partial_mid_read",
		defect: "FetchStatuses returns the rows read so far, as success, when its ctx ends in the middle of a read",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			d := &partialDriver{Driver: h.b}
			return &stallingHarness{brokenHarness{fakeHarness: h, d: d}, d}
		},
		wantFail:   []string{"20_fetch_cancel_mid_read"},
		wantOutput: "a partial result as success",
	},
	{
		name:   "loses_after_timeout",
		defect: "after a Next whose ctx ended, the next notification on that subscription is lost",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: forgetfulDriver{h.b}}
		},
		wantFail: []string{"21_next_after_ctx_timeout"},
	},
	{
		name:   "shared_buffer",
		defect: "the slice FetchStatuses returns is reused by the next call",
		wrap: func(_ *testing.T, h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: &sharedBufferDriver{Driver: h.b}}
		},
		wantFail:   []string{"22_fetch_results_independent"},
		wantOutput: "checked after",
	},
	{
		name:   "hanging_close",
		defect: "Subscription.Close never returns (until the test's harness is torn down)",
		wrap: func(t *testing.T, h *fakeHarness) conformance.Harness {
			torn := make(chan struct{})
			// Registered before the suite's cleanups, so it runs after
			// them: the suite must not depend on it.
			t.Cleanup(func() { close(torn) })
			return &brokenHarness{fakeHarness: h, d: hangingDriver{h.b, torn}}
		},
		wantFail:   []string{"08_close_ends_waits", "13_driver_listen_is_live", "21_next_after_ctx_timeout"},
		wantOutput: "Subscription.Close (cleanup of a subscription the case opened) did not return within",
	},
}

// brokenHarness is the fake harness with a broken Driver or write path. It
// keeps the optional capabilities of the embedded fakeHarness, so cases 11
// and 15 run too.
type brokenHarness struct {
	*fakeHarness
	d     jobwatch.Driver // nil: the fake itself
	perID bool            // Apply each id in its own transaction
}

func (h *brokenHarness) Driver() jobwatch.Driver {
	if h.d != nil {
		return h.d
	}
	return h.fakeHarness.Driver()
}

func (h *brokenHarness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	if !h.perID {
		return h.fakeHarness.Apply(ctx, ev, ids...)
	}
	var first error
	for _, id := range ids {
		if err := h.fakeHarness.Apply(ctx, ev, id); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// lyingDriver reports state for every id it is asked about (only known ids
// unless inventIDs); with deaf, its subscriptions never deliver.
type lyingDriver struct {
	jobwatch.Driver
	deaf      bool
	state     statemachine.State
	inventIDs bool
}

func (d *lyingDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil || !d.deaf {
		return sub, err
	}
	return &deafSub{inner: sub, closed: make(chan struct{})}, nil
}

func (d *lyingDriver) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if d.inventIDs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seen := map[jobwatch.JobID]bool{}
		var out []jobwatch.Status
		for _, id := range ids {
			if id > 0 && !seen[id] {
				seen[id] = true
				out = append(out, jobwatch.Status{ID: id, State: d.state})
			}
		}
		return out, nil
	}
	st, err := d.Driver.FetchStatuses(ctx, ids)
	for i := range st {
		st[i].State = d.state
	}
	return st, err
}

type deafSub struct {
	inner  jobwatch.Subscription
	once   sync.Once
	closed chan struct{}
}

func (s *deafSub) Next(ctx context.Context) (jobwatch.Notification, error) {
	select {
	case <-ctx.Done():
		return jobwatch.Notification{}, ctx.Err()
	case <-s.closed:
		return jobwatch.Notification{}, errors.New("deaf: closed")
	}
}

func (s *deafSub) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.inner.Close()
}

// ctxIgnoringDriver drops every ctx on the floor (Close still works).
type ctxIgnoringDriver struct{ jobwatch.Driver }

func (d ctxIgnoringDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil {
		return nil, err
	}
	return ctxIgnoringSub{sub}, nil
}

func (d ctxIgnoringDriver) FetchStatuses(_ context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	return d.Driver.FetchStatuses(context.Background(), ids)
}

type ctxIgnoringSub struct{ jobwatch.Subscription }

func (s ctxIgnoringSub) Next(context.Context) (jobwatch.Notification, error) {
	return s.Subscription.Next(context.Background())
}

// lateListenDriver's subscriptions lose the first notification, as one
// whose LISTEN is not yet committed when Listen returns would.
type lateListenDriver struct{ jobwatch.Driver }

func (d lateListenDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil {
		return nil, err
	}
	return &lateSub{Subscription: sub}, nil
}

type lateSub struct {
	jobwatch.Subscription
	mu      sync.Mutex
	dropped bool
}

func (s *lateSub) Next(ctx context.Context) (jobwatch.Notification, error) {
	for {
		n, err := s.Subscription.Next(ctx)
		if err != nil {
			return n, err
		}
		s.mu.Lock()
		drop := !s.dropped
		s.dropped = true
		s.mu.Unlock()
		if !drop {
			return n, nil
		}
	}
}

// TestBrokenChild runs the suite on the broken backend named by
// JOBWATCH_CONFORMANCE_BROKEN. It only does something in the subprocess
// TestBrokenBackendsAreReported starts; it is expected to fail there.
func TestBrokenChild(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Log("helper of TestBrokenBackendsAreReported: does something only in its subprocess")
		return
	}
	for _, b := range brokenBackends {
		if b.name == name {
			conformance.Run(t, func(t *testing.T) conformance.Harness { return b.wrap(t, newFakeHarness(t)) })
			return
		}
	}
	t.Fatalf("unknown broken backend %q", name)
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: TestBrokenChild/(\S+)`)

func TestBrokenBackendsAreReported(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		return // we are the child
	}
	for _, b := range brokenBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrokenChild$", "-test.v", "-test.count=1", "-test.timeout=100s")
			// A short operation timeout: a broken backend fails fast.
			cmd.Env = append(os.Environ(), brokenEnv+"="+b.name, conformance.TimeoutEnv+"=1s")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed (or could not run: %v) on a backend whose %s\n%s", err, b.defect, out)
			}
			failed := map[string]bool{}
			for _, m := range failLine.FindAllStringSubmatch(string(out), -1) {
				failed[m[1]] = true
			}
			var missing []string
			for _, c := range b.wantFail {
				if !failed[c] {
					missing = append(missing, c)
				}
			}
			names := make([]string, 0, len(failed))
			for c := range failed {
				names = append(names, c)
			}
			sort.Strings(names)
			if len(missing) > 0 {
				t.Errorf("backend whose %s: cases %v did not fail (failed: %v)\n%s", b.defect, missing, names, out)
				return
			}
			if b.wantOutput != "" && !strings.Contains(string(out), b.wantOutput) {
				t.Errorf("backend whose %s: the suite's output does not say %q\n%s", b.defect, b.wantOutput, out)
				return
			}
			t.Logf("backend whose %s: the suite failed %d case(s): %s", b.defect, len(names), strings.Join(names, ", "))
		})
	}
}

// errBrokenClosed is what the broken subscriptions' Next returns after
// their Close.
var errBrokenClosed = errors.New("broken: subscription closed")

// leakyDriver's subscriptions end on Close (Next fails) but never release
// the fake's subscription.
type leakyDriver struct{ jobwatch.Driver }

func (d leakyDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil {
		return nil, err
	}
	closed, close := context.WithCancel(context.Background())
	return &leakySub{inner: sub, closed: closed, close: close}, nil
}

type leakySub struct {
	inner  jobwatch.Subscription
	closed context.Context
	close  context.CancelFunc
}

func (s *leakySub) Next(ctx context.Context) (jobwatch.Notification, error) {
	if s.closed.Err() != nil {
		return jobwatch.Notification{}, errBrokenClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closed, cancel)()
	n, err := s.inner.Next(ctx)
	if err != nil && s.closed.Err() != nil {
		return n, errBrokenClosed
	}
	return n, err
}

func (s *leakySub) Close() error {
	s.close() // the defect: s.inner.Close() is never called
	return nil
}

// partialDriver reads one id at a time and, when its ctx ends in the
// middle, returns what it has read as success (an already done ctx is
// refused properly). StallReads holds a read after its first row.
type partialDriver struct {
	jobwatch.Driver

	mu    sync.Mutex
	stall *readStall
}

type readStall struct {
	once    sync.Once
	stalled chan struct{}
	release chan struct{}
	end     sync.Once
}

func (d *partialDriver) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	stall := d.stall
	d.mu.Unlock()
	out := []jobwatch.Status{}
	seen := map[jobwatch.JobID]bool{}
	for _, id := range ids {
		if len(out) == 1 && stall != nil {
			stall.once.Do(func() { close(stall.stalled) })
			select {
			case <-stall.release:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			return out, nil // the defect: rows.Err() not checked
		}
		st, err := d.Driver.FetchStatuses(ctx, []jobwatch.JobID{id})
		if err != nil {
			return nil, err
		}
		for _, s := range st {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// stallingHarness gives the broken harness partialDriver's stall.
type stallingHarness struct {
	brokenHarness
	d *partialDriver
}

func (h *stallingHarness) StallReads(context.Context) (<-chan struct{}, func(), error) {
	st := &readStall{stalled: make(chan struct{}), release: make(chan struct{})}
	h.d.mu.Lock()
	h.d.stall = st
	h.d.mu.Unlock()
	return st.stalled, func() {
		st.end.Do(func() {
			h.d.mu.Lock()
			if h.d.stall == st {
				h.d.stall = nil
			}
			h.d.mu.Unlock()
			close(st.release)
		})
	}, nil
}

// forgetfulDriver's subscriptions drop the first notification after a Next
// that ended with its ctx.
type forgetfulDriver struct{ jobwatch.Driver }

func (d forgetfulDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil {
		return nil, err
	}
	return &forgetfulSub{Subscription: sub}, nil
}

type forgetfulSub struct {
	jobwatch.Subscription
	mu   sync.Mutex
	drop bool
}

func (s *forgetfulSub) Next(ctx context.Context) (jobwatch.Notification, error) {
	for {
		n, err := s.Subscription.Next(ctx)
		s.mu.Lock()
		if err != nil {
			if ctx.Err() != nil {
				s.drop = true
			}
			s.mu.Unlock()
			return n, err
		}
		drop := s.drop
		s.drop = false
		s.mu.Unlock()
		if !drop {
			return n, nil
		}
	}
}

// sharedBufferDriver copies every result into one buffer it returns, and
// reuses it on the next call.
type sharedBufferDriver struct {
	jobwatch.Driver
	mu  sync.Mutex
	buf []jobwatch.Status
}

func (d *sharedBufferDriver) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	st, err := d.Driver.FetchStatuses(ctx, ids)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf[:0], st...)
	return d.buf, nil
}

// hangingDriver's subscriptions' Close blocks until torn is closed (the
// harness's cleanup), then closes for real.
type hangingDriver struct {
	jobwatch.Driver
	torn <-chan struct{}
}

func (d hangingDriver) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	sub, err := d.Driver.Listen(ctx)
	if err != nil {
		return nil, err
	}
	return hangingSub{sub, d.torn}, nil
}

type hangingSub struct {
	jobwatch.Subscription
	torn <-chan struct{}
}

func (s hangingSub) Close() error {
	<-s.torn
	return s.Subscription.Close()
}
