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
