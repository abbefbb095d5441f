package pq_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/statemachine"
)

// harness is one case's installation: a fresh schema whose name is also the
// prefix, so that its channel is its own.
type harness struct {
	e *env
}

var (
	_ conformance.ListenerBreaker = (*harness)(nil)
	_ conformance.RawNotifier     = (*harness)(nil)
)

func (h *harness) Driver() jobwatch.Driver { return h.e.b }

func (h *harness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]jwpq.NewJob, n)
	for i := range jobs {
		jobs[i] = jwpq.NewJob{Entrypoint: "conformance"}
	}
	return h.e.b.Enqueue(ctx, jobs...)
}

func (h *harness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return h.e.b.Apply(ctx, ev, ids...)
}

// BreakListener terminates the server process of every open subscription,
// as an administrator or a crashed network path would.
func (h *harness) BreakListener(ctx context.Context) error {
	pids := h.e.b.ListenerPIDs()
	if len(pids) == 0 {
		return fmt.Errorf("no open subscription to break")
	}
	for _, pid := range pids {
		var ok bool
		if err := h.e.db.QueryRowxContext(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("pg_terminate_backend(%d) found no such process", pid)
		}
	}
	return nil
}

func (h *harness) NotifyRaw(ctx context.Context, payload string) error {
	return h.e.b.NotifyRaw(ctx, payload)
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Harness {
		return &harness{newEnv(t)}
	})
}
