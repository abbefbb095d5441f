// Package pgtest helps the PostgreSQL backends' tests: it finds the test
// database, gives each test a fresh schema that is dropped when the test
// ends, offers a TCP proxy that can silently stop forwarding, to simulate a
// half-open connection, and holds the helpers both backends' tests share
// (a bounded context, bringing a job to a state, reading its status).
//
// It opens connections only to create and drop schemas; each backend opens
// its own with the DSN it returns. A database that cannot be reached fails
// the test with a message saying where it looked; it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch/internal/redact"
)

// EnvDSN names the environment variable that holds the test database's DSN.
const EnvDSN = "JOBWATCH_TEST_DATABASE_URL"

// DefaultDSN is used when EnvDSN is unset or empty.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the test database's connection string (a URL).
func DSN() string {
	if s := os.Getenv(EnvDSN); s != "" {
		return s
	}
	return DefaultDSN
}

// UniqueName returns a fresh lower-case identifier, "jwt_" and 12 hex
// digits (16 bytes), usable as a schema name or, with a trailing "_", as a
// prefix.
func UniqueName() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "jwt_" + hex.EncodeToString(b[:])
}

// Connect opens a plain connection to the test database, failing the test
// with a clear message when it cannot. The connection is closed at cleanup.
func Connect(t testing.TB) *pgxv5.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgxv5.Connect(ctx, DSN())
	if err != nil {
		t.Fatalf("pgtest: cannot reach the test database at %q (set %s to change it; "+
			"PostgreSQL must be running, tests never skip): %v", safeDSN(DSN()), EnvDSN, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// Schema creates a fresh, uniquely named schema in the test database and
// returns its name. It is dropped, with everything in it (CASCADE), when the
// test and its subtests end. Tests using different schemas can run in
// parallel. An unreachable database fails the test.
func Schema(t testing.TB) string {
	t.Helper()
	name := UniqueName()
	conn := Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgxv5.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	t.Cleanup(func() { dropSchema(t, name) })
	return name
}

func dropSchema(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgxv5.Connect(ctx, DSN())
	if err != nil {
		t.Errorf("pgtest: drop schema %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgxv5.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("pgtest: drop schema %s: %v", name, err)
	}
}

// safeDSN is dsn with its password masked, for messages.
func safeDSN(dsn string) string { return redact.New(redact.Secrets(dsn)...).String(dsn) }
