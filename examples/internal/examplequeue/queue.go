// Package examplequeue gives the wait-for-all and wait-for-first examples a
// queue: in memory by default, or a throwaway one on PostgreSQL.
package examplequeue

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Queue is what these examples need from a backend: the Driver to watch,
// the job API the enqueuer uses, and Apply, with which the pretend workers
// move a given job. backends/fake and backends/pgx both have it.
type Queue interface {
	jobwatch.Driver
	queue.Queue
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
}

// Jobs returns one job per entrypoint.
func Jobs(entrypoints ...string) []queue.NewJob {
	jobs := make([]queue.NewJob, len(entrypoints))
	for i, e := range entrypoints {
		jobs[i] = queue.NewJob{Entrypoint: e}
	}
	return jobs
}

// Open returns the in-memory backend when dsn is empty, else a
// throwaway queue on PostgreSQL through backends/pgx, under a prefix of its
// own so that no real queue is touched. release drops and closes it.
func Open(ctx context.Context, dsn string) (q Queue, release func(), err error) {
	if dsn == "" {
		fmt.Println("on the in-memory backend (pass -dsn to run on PostgreSQL)")
		b := fake.New()
		return b, func() { b.Close() }, nil
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	prefix := "jwex_" + strings.ToLower(rand.Text()[:8]) + "_"
	b, err := jwpgx.New(pool, jwpgx.WithPrefix(prefix))
	if err == nil {
		_, err = b.Install(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	fmt.Printf("on PostgreSQL, in a queue under prefix %s\n", prefix)
	return b, func() {
		// ctx may be over by now; the tables must go anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := b.Uninstall(ctx); err != nil {
			log.Printf("uninstall: %v", err)
		}
		pool.Close()
	}, nil
}
