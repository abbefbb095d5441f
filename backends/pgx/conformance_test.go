package pgx_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// harness is one fresh installation (own schema, own prefix and so own
// channel) per conformance case, reached through its own TCP proxy so that
// reads can be stalled in the middle of their result.
type harness struct {
	e     *env
	proxy *pgtest.Proxy
}

var (
	_ conformance.ResourceReporter = harness{}
	_ conformance.ReadStaller      = harness{}
)

// OpenResources counts the backend's open subscriptions, its listening
// connections and the pool connections checked out.
func (h harness) OpenResources() conformance.Resources {
	return conformance.Resources{
		Subscriptions: h.e.b.OpenSubscriptions(),
		Conns:         h.e.b.ListenerConns() + int(h.e.pool.Stat().AcquiredConns()),
	}
}

// StallReads makes the proxy hold results after their first two rows.
func (h harness) StallReads(context.Context) (<-chan struct{}, func(), error) {
	stalled, release := h.proxy.StallRows(2)
	return stalled, release, nil
}

var (
	_ conformance.Harness         = harness{}
	_ conformance.ListenerBreaker = harness{}
	_ conformance.RawNotifier     = harness{}
)

func (h harness) Driver() jobwatch.Driver { return h.e.b }

func (h harness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]queue.NewJob, n)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: "conformance"}
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
		proxy, dsn := pgtest.NewProxy(t)
		return harness{newEnvDSN(t, dsn), proxy}
	})
}

// ApplyOpen runs the backend's own transition statement in a transaction
// it leaves open: the log rows (and their ids) exist, uncommitted.
func (h harness) ApplyOpen(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) (func(context.Context, bool) error, error) {
	names, err := pgschema.NewNames(h.e.schema+"_", h.e.schema)
	if err != nil {
		return nil, err
	}
	list, err := pgschema.JobIDs(ids)
	if err != nil {
		return nil, err
	}
	st, err := names.Transition(ev, list, "")
	if err != nil {
		return nil, err
	}
	tx, err := h.e.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, st.SQL, st.Args...); err != nil {
		_ = tx.Rollback(context.Background())
		return nil, err
	}
	return func(ctx context.Context, commit bool) error {
		if commit {
			return tx.Commit(ctx)
		}
		return tx.Rollback(ctx)
	}, nil
}

var _ conformance.OpenApplier = harness{}

// HoldSilently holds ids with a plain UPDATE (pgtest.SilentHoldSQL), which
// the trigger, like PgQueuer's, does not announce.
func (h harness) HoldSilently(ctx context.Context, ids ...jobwatch.JobID) error {
	raw := make([]int64, len(ids))
	for i, id := range ids {
		raw[i] = int64(id)
	}
	tx, err := h.e.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	tag, err := tx.Exec(ctx, pgtest.SilentHoldSQL(h.e.b.QueueTable(), h.e.b.LogTable()), raw)
	if err != nil {
		return err
	}
	if n := tag.RowsAffected(); n != int64(len(ids)) {
		return fmt.Errorf("held %d of %d jobs", n, len(ids))
	}
	return tx.Commit(ctx)
}

var _ conformance.SilentHolder = harness{}
