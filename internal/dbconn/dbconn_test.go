package dbconn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		config  bool // a *ConfigError, else a *ConnectError
		message string
	}{
		{"unknown driver", Config{Driver: "mysql"}, true, "--driver"},
		{"pgx, bad DSN", Config{Driver: "pgx", DSN: "postgres://u:s3cret@h:notaport/x"}, true, "not a valid connection string"},
		{"pgx, bad prefix", Config{Driver: "pgx", DSN: pgtest.DSN(), Prefix: "bad prefix!"}, true, "prefix"},
		{"pgx, nobody listens", Config{Driver: "pgx", DSN: "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5"}, false, "connect"},
		{"pq, nobody listens", Config{Driver: "pq", DSN: "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5"}, false, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			db, err := Open(ctx, tt.cfg)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			var ce *ConfigError
			var ne *ConnectError
			if tt.config && !errors.As(err, &ce) || !tt.config && !errors.As(err, &ne) {
				t.Errorf("error %T %v, want a config error: %v", err, err, tt.config)
			}
			if !strings.Contains(err.Error(), tt.message) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q: want %q and no password", err, tt.message)
			}
		})
	}
}

func TestOpenBothDrivers(t *testing.T) {
	for _, driver := range []string{"pgx", "pq"} {
		t.Run(driver, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			db, err := Open(ctx, Config{DSN: pgtest.DSN(), Driver: driver, Schema: pgtest.UniqueName(), MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if (driver == "pgx") != (db.Pgx != nil) || (driver == "pq") != (db.SQL != nil) {
				t.Errorf("pools: pgx %v, sql %v", db.Pgx != nil, db.SQL != nil)
			}
			if db.Pgx != nil && db.Pgx.Config().MaxConns != 2 {
				t.Errorf("MaxConns %d, want 2", db.Pgx.Config().MaxConns)
			}
			if ok, err := db.Queue.Installed(ctx); err != nil || ok {
				t.Errorf("Installed in a fresh schema: %v, %v", ok, err)
			}
			db.Close() // idempotent
		})
	}
}
