package pgx_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/statemachine"
)

// harness is one fresh installation (own schema, own prefix and so own
// channel) per conformance case.
type harness struct{ e *env }

var (
	_ conformance.Harness         = harness{}
	_ conformance.ListenerBreaker = harness{}
	_ conformance.RawNotifier     = harness{}
)

func (h harness) Driver() jobwatch.Driver { return h.e.b }

func (h harness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]jwpgx.NewJob, n)
	for i := range jobs {
		jobs[i] = jwpgx.NewJob{Entrypoint: "conformance"}
	}
	return h.e.b.Enqueue(ctx, jobs...)
}

func (h harness) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return h.e.b.Apply(ctx, ev, ids...)
}

// BreakListener terminates every listening connection's server process, as
// an administrator or a failover would.
func (h harness) BreakListener(ctx context.Context) error {
	pids := h.e.b.ListenerPIDs()
	if len(pids) == 0 {
		return fmt.Errorf("no listener to break")
	}
	for _, pid := range pids {
		if _, err := h.e.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", int64(pid)); err != nil {
			return err
		}
	}
	return nil
}

func (h harness) NotifyRaw(ctx context.Context, payload string) error {
	return h.e.b.NotifyRaw(ctx, payload)
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Harness {
		return harness{newEnv(t)}
	})
}
