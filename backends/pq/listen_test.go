package pq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// tableChanged is the trigger's payload for this env's queue table.
func (e *env) tableChanged() string {
	return fmt.Sprintf(`{"channel":%q,"operation":"update","sent_at":"2024-01-01T00:00:00+00:00","table":%q,"type":"table_changed_event"}`,
		e.b.Channel(), e.prefix+"pgqueuer")
}

// A commit is delivered after it, not before: a statement inside an open
// transaction fires the trigger, but Next sees nothing until the commit.
func TestListenDeliversAfterCommit(t *testing.T) {
	e := newEnv(t)
	sub := e.listen()
	if sub.PID() == 0 || !strings.HasPrefix(sub.ApplicationName(), "jobwatch-listener-") {
		t.Errorf("PID %d, application_name %q", sub.PID(), sub.ApplicationName())
	}
	if pids := e.b.ListenerPIDs(); len(pids) != 1 || pids[0] != sub.PID() {
		t.Errorf("ListenerPIDs = %v, want [%d]", pids, sub.PID())
	}
	var app string
	if err := e.db.QueryRowxContext(e.ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = $1`, int64(sub.PID())).Scan(&app); err != nil || app != sub.ApplicationName() {
		t.Errorf("pg_stat_activity: %q, %v", app, err)
	}

	e.enqueue(1)
	if n, err := pgtest.NextWithin(sub, 10*time.Second); err != nil || n.Resync || len(n.IDs) != 0 {
		t.Fatalf("Next after a commit = %+v, %v; want a plain hint", n, err)
	}

	tx, err := e.db.BeginTxx(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// An INSERT: the trigger, like PgQueuer's, is silent on UPDATE.
	if _, err := tx.ExecContext(e.ctx, `INSERT INTO `+e.b.QueueTable()+` (priority, entrypoint, status) VALUES (0, 'x', 'queued')`); err != nil {
		t.Fatal(err)
	}
	// Negative check: nothing can signal "no notification"; a short wait.
	if n, err := pgtest.NextWithin(sub, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next before the commit = %+v, %v; want a timeout", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := pgtest.NextWithin(sub, 10*time.Second); err != nil || n.Resync {
		t.Fatalf("Next after the commit = %+v, %v", n, err)
	}
	if sub.Ignored() != 0 {
		t.Errorf("Ignored = %d, want 0", sub.Ignored())
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if pids := e.b.ListenerPIDs(); len(pids) != 0 {
		t.Errorf("ListenerPIDs after Close = %v", pids)
	}
}

// Garbage, other event types, other tables' changes and foreign probes are
// dropped and counted; only our table's change is delivered.
func TestGarbageIgnoredAndCounted(t *testing.T) {
	e := newEnv(t)
	sub := e.listen()
	var _ jobwatch.IgnoredCounter = sub
	payloads := []string{
		"junk", "", "{", "null", "[1,2]", `{"type":1}`, `{"no_type":true}`,
		`{"type":"cancellation_event","ids":[1,2]}`,
		`{"type":"health_check_event","id":"not-ours"}`,
		`{"type":"some_future_event"}`,
		`{"type":"table_changed_event","table":"another_table"}`,
		`{"type":"table_changed_event","table":5}`,
		"\xff\xfe not utf-8 but sent as text",
	}
	// Straight SQL, as anyone sharing the channel would.
	sent := 0
	for _, p := range payloads {
		if strings.HasPrefix(p, "\xff") {
			continue // the server refuses invalid UTF-8 text; covered below
		}
		e.exec(`SELECT pg_notify($1, $2)`, e.b.Channel(), p)
		sent++
	}
	// Through the backend too.
	if err := e.b.NotifyRaw(e.ctx, "junk via NotifyRaw"); err != nil {
		t.Fatal(err)
	}
	sent++
	// And straight into the subscription (what the server cannot send).
	sub.Deliver(&libpq.Notification{Channel: e.b.Channel(), Extra: "\xff\xfe"})
	sub.Deliver(&libpq.Notification{Channel: "another_channel", Extra: e.tableChanged()})
	sent += 2
	// The genuine change is the first thing Next returns.
	if err := e.b.NotifyRaw(e.ctx, e.tableChanged()); err != nil {
		t.Fatal(err)
	}
	if n, err := pgtest.NextWithin(sub, 10*time.Second); err != nil || n.Resync {
		t.Fatalf("Next = %+v, %v; want the genuine change", n, err)
	}
	if got := sub.Ignored(); got != uint64(sent) {
		t.Errorf("Ignored = %d, want %d", got, sent)
	}
	if b := sub.Buffered(); b != 0 {
		t.Errorf("%d notifications still buffered", b)
	}
}

// lib/pq's nil notification (sent after it re-connected and re-listened)
// is delivered as a Resync, and makes anything buffered before redundant.
func TestNilNotificationIsResync(t *testing.T) {
	e := newEnv(t)
	sub := e.listen()
	sub.Deliver(&libpq.Notification{Channel: e.b.Channel(), Extra: e.tableChanged()})
	sub.Deliver(nil)
	sub.Deliver(&libpq.Notification{Channel: e.b.Channel(), Extra: e.tableChanged()})
	for i, want := range []bool{true, false} {
		n, err := pgtest.NextWithin(sub, 5*time.Second)
		if err != nil || n.Resync != want {
			t.Fatalf("Next #%d = %+v, %v; want Resync=%v", i, n, err, want)
		}
	}
	if b := sub.Buffered(); b != 0 {
		t.Errorf("%d notifications still buffered", b)
	}
}

// A full buffer never blocks the drain and never drops silently: it
// collapses into one Resync, followed by what arrived after.
func TestBufferOverflowCollapsesIntoResync(t *testing.T) {
	e := newEnv(t)
	e.b.SetBufferSize(4)
	sub := e.listen()
	const sent = 11
	for i := 0; i < sent; i++ {
		// One transaction each, so that the server does not fold them.
		if err := e.b.NotifyRaw(e.ctx, e.tableChanged()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the drain received every notification", func() bool { return sub.Activity() >= sent })
	if sub.Overflows() != 2 {
		t.Errorf("Overflows = %d, want 2 (11 into a buffer of 4)", sub.Overflows())
	}
	n, err := pgtest.NextWithin(sub, time.Second)
	if err != nil || !n.Resync {
		t.Fatalf("first Next = %+v, %v; want a Resync", n, err)
	}
	hints := 0
	for sub.Buffered() > 0 {
		if n, err := pgtest.NextWithin(sub, time.Second); err != nil || n.Resync {
			t.Fatalf("Next = %+v, %v", n, err)
		}
		hints++
	}
	if hints != 2 {
		t.Errorf("%d hints after the Resync, want 2", hints)
	}
}

// Killing the listening connection (pg_terminate_backend) fails the
// subscription: Next returns an error, keeps returning it, and Close is
// prompt. Its pid is found by the listener's application_name.
func TestKillListenerConnection(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, jwpq.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	sub := e.listen()
	var pid int64
	if err := e.db.QueryRowxContext(e.ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, sub.ApplicationName()).Scan(&pid); err != nil {
		t.Fatalf("listener not found in pg_stat_activity: %v", err)
	}
	if uint32(pid) != sub.PID() {
		t.Errorf("pg_stat_activity pid %d, PID() %d", pid, sub.PID())
	}
	next := make(chan error, 1)
	go func() {
		_, err := pgtest.NextWithin(sub, 30*time.Second)
		next <- err
	}()
	var ok bool
	if err := e.db.QueryRowxContext(e.ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
	}
	select {
	case err := <-next:
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next after the kill: %v, want a connection error", err)
		}
		t.Logf("Next after the kill: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after its connection was killed")
	}
	if _, err := pgtest.NextWithin(sub, time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next on a dead subscription: %v, want the same error again", err)
	}
	t0 := time.Now()
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Close of a dead subscription took %v", d)
	}
	if !strings.Contains(logs.String(), "listener failed") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	// A new subscription works.
	sub2 := e.listen()
	e.enqueue(1)
	if _, err := pgtest.NextWithin(sub2, 10*time.Second); err != nil {
		t.Fatalf("Next on a new subscription: %v", err)
	}
}

// Close while Next is blocked: Next returns ErrSubscriptionClosed at once;
// Close is idempotent; Next after Close fails at once.
func TestCloseWhileNextBlocked(t *testing.T) {
	e := newEnv(t)
	sub := e.listen()
	started := make(chan struct{})
	next := make(chan error, 1)
	go func() {
		close(started)
		_, err := sub.Next(context.Background())
		next <- err
	}()
	<-started
	t0 := time.Now()
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-next:
		if !errors.Is(err, jwpq.ErrSubscriptionClosed) {
			t.Errorf("blocked Next after Close: %v, want ErrSubscriptionClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("blocked Next did not return after Close")
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Close + Next took %v", d)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := sub.Next(context.Background()); !errors.Is(err, jwpq.ErrSubscriptionClosed) {
		t.Errorf("Next after Close: %v", err)
	}
	// Concurrent Closes.
	sub2 := e.listen()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = sub2.Close() }()
	}
	wg.Wait()
}

// Next honours ctx, and a cancelled ctx leaves the subscription usable.
func TestNextHonoursCtx(t *testing.T) {
	e := newEnv(t)
	sub := e.listen()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled ctx: %v", err)
	}
	if _, err := pgtest.NextWithin(sub, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with an expiring ctx: %v", err)
	}
	e.enqueue(1)
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Errorf("Next after ctx errors: %v", err)
	}
}

// The health check sends a probe from the pool and expects it back: while
// the connection is healthy, Next keeps waiting and the probe is not
// counted as ignored (other subscriptions on the channel do see it).
func TestHealthCheckProbe(t *testing.T) {
	e := newEnv(t, jwpq.WithHealthCheck(50*time.Millisecond))
	sub := e.listen()
	other, err := jwpq.New(e.db, pgtest.DSN(), jwpq.WithSchema(e.schema), jwpq.WithPrefix(e.prefix), jwpq.WithHealthCheck(0))
	if err != nil {
		t.Fatal(err)
	}
	osub, err := other.Listen(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer osub.Close()
	if _, err := pgtest.NextWithin(sub, 500*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a healthy idle connection: %v, want a timeout", err)
	}
	if sub.Ignored() != 0 {
		t.Errorf("own probes counted as ignored: %d", sub.Ignored())
	}
	eventually(t, 5*time.Second, "the other subscription saw our probes", func() bool {
		return osub.(*jwpq.Subscription).Ignored() > 0
	})
	// Still delivers.
	e.enqueue(1)
	if _, err := pgtest.NextWithin(sub, 10*time.Second); err != nil {
		t.Fatalf("Next after health checks: %v", err)
	}
}

// A half-open listening connection (the network silently drops everything)
// is found by the health check: Next fails within about two intervals, and
// Close is bounded although the socket never answers.
func TestHalfOpenConnectionDetected(t *testing.T) {
	proxy, proxyDSN := pgtest.NewProxy(t)
	const interval = 200 * time.Millisecond
	e := newEnvDSN(t, proxyDSN, jwpq.WithHealthCheck(interval))
	sub := e.listen()
	if n := proxy.Blackhole(); n != 1 {
		t.Fatalf("blackholed %d connections, want the listener's only", n)
	}
	t0 := time.Now()
	_, err := pgtest.NextWithin(sub, 10*time.Second)
	if !errors.Is(err, jwpq.ErrUnhealthy) {
		t.Fatalf("Next on a half-open connection: %v, want ErrUnhealthy", err)
	}
	if d := time.Since(t0); d > 3*interval+time.Second {
		t.Errorf("detected after %v", d)
	}
	t0 = time.Now()
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// Listen honours ctx even while lib/pq blocks: here the server accepts the
// connection and never answers.
func TestListenHonoursCtx(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-acceptDone
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	b, err := jwpq.New(unopenedDB(t), "postgres://u:pw@"+ln.Addr().String()+"/d?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	sub, err := b.Listen(ctx)
	if err == nil {
		sub.Close()
		t.Fatal("Listen to a silent server succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Listen: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Listen returned %v after its ctx expired", d)
	}
	// An already cancelled ctx fails at once.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := b.Listen(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Listen with a cancelled ctx: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger used from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// When the probe cannot even be sent (here the pool's connection is
// half-open too, and lib/pq would wait for it forever), the health check
// falls back to a bounded Ping of the listener; that fails as well, so
// Next reports ErrUnhealthy instead of hanging, and Close stays bounded.
func TestHealthCheckFallbackPing(t *testing.T) {
	proxy, proxyDSN := pgtest.NewProxy(t)
	schema := pgtest.Schema(t)
	db := openDB(t, proxyDSN)
	t.Cleanup(proxy.Close) // runs before db.Close: frees the stuck probe
	const interval = 150 * time.Millisecond
	var logs syncBuffer
	b, err := jwpq.New(db, proxyDSN, jwpq.WithSchema(schema), jwpq.WithPrefix(schema+"_"),
		jwpq.WithHealthCheck(interval), jwpq.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx := pgtest.Context(t)
	if _, err := b.Install(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := proxy.Blackhole(); n < 2 {
		t.Fatalf("blackholed %d connections, want the pool's and the listener's", n)
	}
	t0 := time.Now()
	_, err = pgtest.NextWithin(sub, 20*time.Second)
	if !errors.Is(err, jwpq.ErrUnhealthy) || !strings.Contains(err.Error(), "ping") {
		t.Fatalf("Next = %v, want ErrUnhealthy from the ping", err)
	}
	if d := time.Since(t0); d > 4*interval+time.Second {
		t.Errorf("detected after %v", d)
	}
	if !strings.Contains(logs.String(), "pinging the listener instead") {
		t.Errorf("the fallback was not logged:\n%s", logs.String())
	}
	t0 = time.Now()
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("Close took %v", d)
	}
}
