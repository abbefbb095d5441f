package pgx_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestListenDeliversAfterCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.listen()
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(e.ctx, "INSERT INTO "+e.b.QueueTable()+" (priority, entrypoint, status) VALUES (0, 'x', 'queued')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.NextWithin(sub, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before commit: Next = %v, want a timeout", err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	n, err := pgtest.NextWithin(sub, 10*time.Second)
	if err != nil || n.Resync || len(n.IDs) != 0 {
		t.Fatalf("after commit: Next = %+v, %v", n, err)
	}
	// Each lifecycle write a waiter needs is a hint too: an enqueue (an
	// INSERT), a hold (its explicit notification) and a terminal transition
	// (a DELETE). A claim is an UPDATE, silent as with PgQueuer's trigger
	// (TestTriggerPayload checks that).
	id := e.enqueue(1)[0]
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Fatalf("Next after enqueue: %v", err)
	}
	if err := e.b.Apply(e.ctx, statemachine.Claim, id); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []statemachine.Event{statemachine.Hold, statemachine.Delete} {
		if err := e.b.Apply(e.ctx, ev, id); err != nil {
			t.Fatal(err)
		}
		if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
			t.Fatalf("Next after %s: %v", ev, err)
		}
	}
	if n := sub.Ignored(); n != 0 {
		t.Errorf("Ignored = %d", n)
	}
}

func TestListenIgnoresForeignAndGarbage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.listen()
	junk := []string{
		"junk",
		"",
		`{"type": 5}`,
		`[1,2,3]`,
		`{"type":"table_changed_event","table":"someone_elses_table","operation":"insert"}`,
		`{"type":"cancellation_event","ids":[1,2]}`,
		`{"type":"health_check_event","id":"not-ours"}`,
		`{"type":"something_new"}`,
		strings.Repeat("x", 7999),
	}
	for _, p := range junk {
		if err := e.b.NotifyRaw(e.ctx, p); err != nil {
			t.Fatalf("NotifyRaw(%.20q): %v", p, err)
		}
	}
	e.enqueue(1) // the only real change, sent last
	n, err := pgtest.NextWithin(sub, 10*time.Second)
	if err != nil || n.Resync {
		t.Fatalf("Next = %+v, %v", n, err)
	}
	if got := sub.Ignored(); got != uint64(len(junk)) {
		t.Errorf("Ignored = %d, want %d", got, len(junk))
	}
	var counter jobwatch.IgnoredCounter = sub // the optional interface
	_ = counter
	// A hand-written event for our table, like PgQueuer's own, is a hint.
	if err := e.b.NotifyRaw(e.ctx, `{"type":"table_changed_event","table":"`+e.schema+`_pgqueuer","operation":"update","channel":"x","sent_at":"now"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Fatalf("Next for a hand-written event: %v", err)
	}
}

// TestTriggerPayload reads, with a plain connection, what each lifecycle
// write sends on the channel: the trigger's table_changed_event for an
// insert, a delete and a truncate, nothing for the UPDATEs of a claim, a
// retry or a requeue (PgQueuer's trigger is silent on UPDATE), and for a
// hold the explicit notification of the same shape. Each step ends with a
// sentinel notification: notifications arrive in commit order, so what
// comes before the sentinel is the step's.
func TestTriggerPayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := pgtest.Connect(t)
	if _, err := conn.Exec(e.ctx, `LISTEN "`+e.b.Channel()+`"`); err != nil {
		t.Fatal(err)
	}
	var id jobwatch.JobID
	check := func(what string, write func() error, want ...string) {
		t.Helper()
		ns := pgtest.NotificationsOf(t, conn, e.b.NotifyRaw, func() {
			if err := write(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		})
		var got []string
		for _, n := range ns {
			var p map[string]any
			if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
				t.Fatalf("%s: payload %q: %v", what, n.Payload, err)
			}
			if n.Channel != e.b.Channel() || p["channel"] != e.b.Channel() || p["table"] != e.schema+"_pgqueuer" ||
				p["type"] != "table_changed_event" || p["sent_at"] == nil || len(p) != 5 {
				t.Errorf("%s: notification on %q: %s", what, n.Channel, n.Payload)
			}
			op, _ := p["operation"].(string)
			got = append(got, op)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s sent operations %q, want %q", what, got, want)
		}
	}
	apply := func(ev statemachine.Event) func() error {
		return func() error { return e.b.Apply(e.ctx, ev, id) }
	}
	check("enqueue", func() error { id = e.enqueue(1)[0]; return nil }, "insert")
	check("claim", apply(statemachine.Claim))
	check("retry", apply(statemachine.Retry))
	check("claim again", apply(statemachine.Claim))
	check("hold", apply(statemachine.Hold), "update")
	check("requeue", apply(statemachine.Requeue))
	check("claim a third time", apply(statemachine.Claim))
	check("complete", apply(statemachine.Complete), "delete")
	check("truncate", func() error {
		_, err := e.pool.Exec(e.ctx, "TRUNCATE "+e.b.QueueTable())
		return err
	}, "truncate")
}

func TestNextContextKeepsSubscription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.listen()
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next(cancelled) = %v", err)
	}
	if _, err := pgtest.NextWithin(sub, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next(short deadline) = %v", err)
	}
	e.enqueue(1)
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Fatalf("Next after ctx errors: %v", err)
	}
}

// TestHealthCheckKeepsHealthyConnection: idle checks succeed, send probes
// on the channel, and are neither delivered nor counted as ignored.
func TestHealthCheckKeepsHealthyConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jwpgx.WithHealthCheck(30*time.Millisecond))
	spy := pgtest.Connect(t)
	if _, err := spy.Exec(e.ctx, `LISTEN "`+e.b.Channel()+`"`); err != nil {
		t.Fatal(err)
	}
	sub := e.listen()
	if _, err := pgtest.NextWithin(sub, 400*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle Next = %v, want a timeout", err)
	}
	if n := sub.Ignored(); n != 0 {
		t.Errorf("own probes counted as ignored: %d", n)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	n, err := spy.WaitForNotification(ctx)
	if err != nil || !strings.Contains(n.Payload, `"type":"health_check_event"`) {
		t.Fatalf("no probe seen on the channel: %v, %v", n, err)
	}
	e.enqueue(1)
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Fatalf("Next after health checks: %v", err)
	}
}

// TestListenerKilled: pg_terminate_backend on the listener ends Next with
// an error, and the subscription stays dead.
func TestListenerKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.listen()
	if pids := e.b.ListenerPIDs(); !slices.Contains(pids, sub.PID()) {
		t.Fatalf("ListenerPIDs = %v, want %d", pids, sub.PID())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(e.ctx)
		errc <- err
	}()
	var ok bool
	if err := e.pool.QueryRow(e.ctx, "SELECT pg_terminate_backend($1)", int64(sub.PID())).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
	}
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, jwpgx.ErrSubscriptionClosed) {
			t.Fatalf("Next after the kill = %v, want a connection error", err)
		}
		t.Logf("Next: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after the connection was killed")
	}
	if _, err := pgtest.NextWithin(sub, time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next on a dead subscription = %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if pids := e.b.ListenerPIDs(); len(pids) != 0 {
		t.Errorf("ListenerPIDs after Close = %v", pids)
	}
}

// TestHealthCheckDetectsHalfOpen: a listener whose network path silently
// drops everything (no FIN, no RST) is found by the probe.
func TestHealthCheckDetectsHalfOpen(t *testing.T) {
	t.Parallel()
	proxy, dsn := pgtest.NewProxy(t)
	const interval = 150 * time.Millisecond
	e := newEnvDSN(t, dsn, jwpgx.WithHealthCheck(interval))
	sub := e.listen()
	e.pool.Reset() // only the listener is left on the proxy
	if n := proxy.Blackhole(); n != 1 {
		t.Fatalf("blackholed %d connections, want 1", n)
	}
	start := time.Now()
	_, err := pgtest.NextWithin(sub, 20*time.Second)
	took := time.Since(start)
	if !errors.Is(err, jwpgx.ErrUnhealthy) || !strings.Contains(err.Error(), "probe not received") {
		t.Fatalf("Next = %v, want ErrUnhealthy (probe not received)", err)
	}
	if took > 10*interval+2*time.Second {
		t.Errorf("detection took %v with a %v interval", took, interval)
	}
	t.Logf("half-open listener detected in %v", took)
	closed := time.Now()
	sub.Close()
	if d := time.Since(closed); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// TestHealthCheckFallbackPing: when the probe cannot be sent from the pool,
// the check pings the listener instead; a blackholed listener fails it.
func TestHealthCheckFallbackPing(t *testing.T) {
	t.Parallel()
	proxy, dsn := pgtest.NewProxy(t)
	const interval = 150 * time.Millisecond
	e := newEnvDSN(t, dsn, jwpgx.WithHealthCheck(interval))
	// Cut the proxy before the pool closes: pgx drains a timed-out
	// connection for up to 15 s, and the pool waits for that.
	t.Cleanup(proxy.Close)
	sub := e.listen()
	// Keep an idle pool connection on the proxy so the probe hangs on it.
	c, err := e.pool.Acquire(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
	if n := proxy.Blackhole(); n < 2 {
		t.Fatalf("blackholed %d connections, want 2 or more", n)
	}
	_, err = pgtest.NextWithin(sub, 20*time.Second)
	if !errors.Is(err, jwpgx.ErrUnhealthy) {
		t.Fatalf("Next = %v, want ErrUnhealthy", err)
	}
	t.Logf("Next: %v", err)
}

func TestCloseWhileNextBlocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jwpgx.WithHealthCheck(0))
	sub := e.listen()
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		close(started)
		_, err := sub.Next(context.Background())
		errc <- err
	}()
	<-started
	// Next may not have reached its wait yet; Close must work either way.
	begin := time.Now()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, jwpgx.ErrSubscriptionClosed) {
			t.Errorf("blocked Next = %v, want ErrSubscriptionClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := sub.Next(e.ctx); !errors.Is(err, jwpgx.ErrSubscriptionClosed) {
		t.Errorf("Next after Close = %v", err)
	}
	// The connection is gone from the server.
	var n int
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state <> 'idle in transaction'", int64(sub.PID())).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("listener backend still visible right after Close: %d (it exits asynchronously)", n)
}

// Close wins over a health probe in flight: once Close has begun, Next
// returns ErrSubscriptionClosed, whatever the probe then finds (here it
// fails, or it is sent on a cancelled ctx). The probe is held by a hook
// until Close has begun, so no timer races the Close however loaded the
// machine is.
func TestCloseConcurrentWithNext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jwpgx.WithHealthCheck(5*time.Millisecond))
	probing := make(chan struct{}, 1)
	var fail atomic.Bool
	e.b.SetBeforeProbe(func(ctx context.Context) error {
		select {
		case probing <- struct{}{}:
		default:
		}
		<-ctx.Done() // Close cancels Next's ctx as it begins
		if fail.Load() {
			return errors.New("probe lost")
		}
		return nil
	})
	for i := range 10 {
		fail.Store(i%2 == 0)
		sub, err := e.b.Listen(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := sub.Next(e.ctx); err != nil {
					done <- err
					return
				}
			}
		}()
		e.enqueue(1)
		select {
		case <-probing:
		case <-time.After(10 * time.Second):
			t.Fatal("no health probe started")
		}
		go sub.Close()
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, jwpgx.ErrSubscriptionClosed) {
				t.Fatalf("iteration %d: Next = %v, want ErrSubscriptionClosed", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Next did not return after Close")
		}
	}
	if pids := e.b.ListenerPIDs(); len(pids) != 0 {
		t.Errorf("ListenerPIDs = %v", pids)
	}
	if n := e.b.ListenerConns(); n != 0 {
		t.Errorf("ListenerConns = %d after every subscription closed, want 0", n)
	}
}

func TestListenHijacksConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.pool.Stat().TotalConns()
	sub := e.listen()
	if after := e.pool.Stat().TotalConns(); after > before {
		t.Errorf("pool conns %d -> %d: the listener should have left the pool", before, after)
	}
	var inPool bool
	// A pool connection is never the listener.
	if err := e.pool.QueryRow(e.ctx, "SELECT pg_backend_pid() = $1", int64(sub.PID())).Scan(&inPool); err != nil || inPool {
		t.Errorf("listener served a pool query: %v, %v", inPool, err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.b.Listen(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Listen(cancelled) = %v", err)
	}
	if pids := e.b.ListenerPIDs(); len(pids) != 1 {
		t.Errorf("ListenerPIDs = %v", pids)
	}
}
