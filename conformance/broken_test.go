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
	wrap     func(h *fakeHarness) conformance.Harness
	wantFail []string // cases that must report the defect
}

var brokenBackends = []brokenBackend{
	{
		name:   "deaf_and_stuck",
		defect: "subscriptions never deliver and whose status reads report every job as picked forever",
		wrap: func(h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: &lyingDriver{Driver: h.b, deaf: true, state: statemachine.Picked}}
		},
		wantFail: []string{"01_terminal_states_resolve", "02_finished_before_wait", "03_listen_then_check_race", "13_driver_listen_is_live", "14_driver_fetch_statuses"},
	},
	{
		name:   "says_successful",
		defect: "status reads report every id, known or not, as successful",
		wrap: func(h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: &lyingDriver{Driver: h.b, state: statemachine.Successful, inventIDs: true}}
		},
		wantFail: []string{"04_held_is_not_final", "05_not_found_after_grace", "12_spurious_notifications", "14_driver_fetch_statuses", "16_illegal_transitions_refused"},
	},
	{
		name:   "ignores_ctx",
		defect: "Next and FetchStatuses ignore their ctx",
		wrap: func(h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: ctxIgnoringDriver{h.b}}
		},
		wantFail: []string{"13_driver_listen_is_live", "14_driver_fetch_statuses"},
	},
	{
		name:   "listen_not_live",
		defect: "Listen returns before the subscription is live (the first change after it is lost)",
		wrap: func(h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, d: lateListenDriver{h.b}}
		},
		wantFail: []string{"13_driver_listen_is_live"},
	},
	{
		name:   "non_atomic_apply",
		defect: "Apply writes each id in its own transaction, so a batch with an illegal transition is half applied",
		wrap: func(h *fakeHarness) conformance.Harness {
			return &brokenHarness{fakeHarness: h, perID: true}
		},
		wantFail: []string{"16_illegal_transitions_refused"},
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
			conformance.Run(t, func(t *testing.T) conformance.Harness { return b.wrap(newFakeHarness(t)) })
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
			t.Logf("backend whose %s: the suite failed %d case(s): %s", b.defect, len(names), strings.Join(names, ", "))
		})
	}
}
