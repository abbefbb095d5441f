package pq_test

import (
	"context"
	"fmt"
	"testing"

	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// harness is one case's installation: a fresh schema whose name is also the
// prefix, so that its channel is its own.
type harness struct {
	e     *env
	proxy *pgtest.Proxy
}

var (
	_ conformance.ResourceReporter = (*harness)(nil)
	_ conformance.ReadStaller      = (*harness)(nil)
)

// OpenResources counts the backend's open subscriptions, its listening
// connections and the pool connections in use.
func (h *harness) OpenResources() conformance.Resources {
	return conformance.Resources{
		Subscriptions: h.e.b.OpenSubscriptions(),
		Conns:         h.e.b.ListenerConns() + h.e.db.Stats().InUse,
	}
}

// StallReads makes the proxy hold results after their first two rows.
func (h *harness) StallReads(context.Context) (<-chan struct{}, func(), error) {
	stalled, release := h.proxy.StallRows(2)
	return stalled, release, nil
}

var (
	_ conformance.ListenerBreaker = (*harness)(nil)
	_ conformance.RawNotifier     = (*harness)(nil)
)

func (h *harness) Driver() jobwatch.Driver { return h.e.b }

func (h *harness) Enqueue(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]queue.NewJob, n)
	for i := range jobs {
		jobs[i] = queue.NewJob{Entrypoint: "conformance"}
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
		proxy, dsn := pgtest.NewProxy(t)
		return &harness{newEnvDSNs(t, dsn, dsn), proxy}
	})
}

// ApplyOpen runs the backend's own transition statement in a transaction
// it leaves open: the log rows (and their ids) exist, uncommitted.
func (h *harness) ApplyOpen(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) (func(context.Context, bool) error, error) {
	names, err := pgschema.NewNames(h.e.prefix, h.e.schema)
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
	args := make([]any, len(st.Args))
	for i, a := range st.Args {
		switch v := a.(type) {
		case []int64, []string:
			args[i] = libpq.Array(v)
		default:
			args[i] = a
		}
	}
	// Not ctx: database/sql rolls a transaction back when its ctx ends,
	// and this one must outlive the call.
	tx, err := h.e.db.BeginTx(context.Background(), nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, st.SQL, args...); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return func(_ context.Context, commit bool) error {
		if commit {
			return tx.Commit()
		}
		return tx.Rollback()
	}, nil
}

var _ conformance.OpenApplier = (*harness)(nil)

// HoldSilently holds ids with a plain UPDATE (pgtest.SilentHoldSQL), which
// the trigger, like PgQueuer's, does not announce.
func (h *harness) HoldSilently(ctx context.Context, ids ...jobwatch.JobID) error {
	raw := make([]int64, len(ids))
	for i, id := range ids {
		raw[i] = int64(id)
	}
	tx, err := h.e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, pgtest.SilentHoldSQL(h.e.b.QueueTable(), h.e.b.LogTable()), libpq.Array(raw))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
		return fmt.Errorf("held %d of %d jobs (%v)", n, len(ids), err)
	}
	return tx.Commit()
}

var _ conformance.SilentHolder = (*harness)(nil)
