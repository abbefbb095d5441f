// Command pgx waits for PostgreSQL jobs through jackc/pgx v5: it opens a
// pool, installs a throwaway queue on it, and runs the demo of
// examples/internal/resizedemo there (a few jobs enqueued, a worker
// goroutine running them, their outcomes awaited with Wait and WaitAll).
//
//	go run ./examples/pgx    # DSN from $DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test
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

	"github.com/jackc/pgx/v5/pgxpool"

	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
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

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	// A prefix of our own gives us private tables and a private NOTIFY
	// channel, so the example never touches a real PgQueuer queue in the
	// same database. In production you would use the defaults.
	prefix := "jwex_" + strings.ToLower(rand.Text()[:8]) + "_"
	backend, err := jwpgx.New(pool, jwpgx.WithPrefix(prefix))
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
