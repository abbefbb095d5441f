package pgtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDSN(t *testing.T) {
	t.Setenv(pgtest.EnvDSN, "")
	if got := pgtest.DSN(); got != pgtest.DefaultDSN {
		t.Errorf("DSN() = %q with the variable empty", got)
	}
	t.Setenv(pgtest.EnvDSN, "postgres://elsewhere/db")
	if got := pgtest.DSN(); got != "postgres://elsewhere/db" {
		t.Errorf("DSN() = %q", got)
	}
}

func TestSchemaIsFreshAndDropped(t *testing.T) {
	conn := pgtest.Connect(t)
	ctx := context.Background()
	exists := func(name string) bool {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	var a, b string
	t.Run("inner", func(t *testing.T) {
		a, b = pgtest.Schema(t), pgtest.Schema(t)
		if a == b || !exists(a) || !exists(b) {
			t.Fatalf("schemas %q, %q: not two fresh schemas", a, b)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE "+pgxv5.Identifier{a, "t"}.Sanitize()+" (x int)"); err != nil {
			t.Fatal(err)
		}
	})
	if exists(a) || exists(b) {
		t.Errorf("schemas %q, %q survived their test", a, b)
	}
}

func TestProxyBlackhole(t *testing.T) {
	proxy, dsn := pgtest.NewProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgxv5.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if n := proxy.Blackhole(); n != 1 {
		t.Fatalf("Blackhole affected %d connections", n)
	}
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := conn.Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping over a blackholed connection = %v, want a timeout", err)
	}
	// New connections pass.
	conn2, err := pgxv5.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	if err := conn2.Ping(ctx); err != nil {
		t.Fatalf("new connection after Blackhole: %v", err)
	}
	proxy.Close() // ends the drain pgx runs on the timed-out connection
}

// StallRows holds a result after its first rows: the client gets exactly
// those, then nothing until release, then the rest; statements without
// rows pass while no connection holds.
func TestProxyStallRows(t *testing.T) {
	proxy, dsn := pgtest.NewProxy(t)
	ctx := pgtest.Context(t)
	conn, err := pgxv5.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	stalled, release := proxy.StallRows(3)
	t.Cleanup(release)
	if _, err := conn.Exec(ctx, "NOTIFY x, 'y'"); err != nil {
		t.Fatalf("a statement without rows during the stall: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT g FROM generate_series(1, 1000) g")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := make(chan int, 1000)
	go func() {
		defer close(got)
		for rows.Next() {
			var v int
			_ = rows.Scan(&v)
			got <- v
		}
	}()
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy never held the result")
	}
	for want := 1; want <= 3; want++ {
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("row %d = %d", want, v)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("row %d of the first three never came", want)
		}
	}
	// The client has read the three rows the proxy let through and now
	// blocks on the socket: nothing more may come until release.
	select {
	case v, ok := <-got:
		t.Fatalf("got %d (more %v) while the result was held", v, ok)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	n := 3
	for range got {
		n++
	}
	if err := rows.Err(); err != nil || n != 1000 {
		t.Fatalf("after release: %d rows, err %v; want 1000", n, err)
	}
}
