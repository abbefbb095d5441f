// Command pq waits for PostgreSQL jobs through lib/pq and sqlx: it opens a
// pool, installs a throwaway queue on it, and runs the demo of
// examples/internal/resizedemo there, as examples/pgx does with the other
// driver; only the connection differs.
//
//	go run ./examples/pq    # DSN from $DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver for sqlx.Open

	"github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/examples/internal/resizedemo"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func main() {
	log.SetFlags(0)
	// Ctrl-C cancels ctx instead of killing the process, so the deferred
	// uninstall in run still cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDSN
	}
	if err := run(ctx, dsn); err != nil {
		log.Fatal(err)
	}
}

// run holds the example, so that its defers (closing the pool, dropping the
// queue) run before main exits, even on error; log.Fatal would skip them.
func run(ctx context.Context, dsn string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// sql.Open connects lazily; a bad DSN or a server that is down should
	// fail here, with a clear error, rather than in the middle of the example.
	if err := db.PingContext(ctx); err != nil {
		return err
	}

	// A prefix of our own gives us private tables and a private NOTIFY
	// channel, so the example never touches a real PgQueuer queue in the
	// same database. In production you would use the defaults.
	prefix := "jwex_" + strings.ToLower(rand.Text()[:8]) + "_"
	// The DSN is needed too: lib/pq's listener opens its own connection,
	// outside the pool, for LISTEN.
	backend, err := pq.New(db, dsn, pq.WithPrefix(prefix))
	if err != nil {
		return err
	}
	if _, err := backend.Install(ctx); err != nil {
		return err
	}
	fmt.Printf("installed a queue under prefix %s\n", prefix)
	defer func() {
		// ctx may be over by now (deadline, Ctrl-C); the tables must go anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := backend.Uninstall(ctx); err != nil {
			log.Printf("uninstall: %v", err)
			return
		}
		fmt.Printf("uninstalled the queue under prefix %s\n", prefix)
	}()

	return resizedemo.Run(ctx, backend)
}
