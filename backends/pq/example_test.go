package pq_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobwatch/jobwatch"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/queue"
)

// A service on lib/pq enqueues a job for (Python or Go) PgQueuer workers and
// waits for its outcome.
func Example() {
	dsn := "postgres://app@127.0.0.1:5432/app?sslmode=disable"
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// The DSN is needed for the listening connections lib/pq opens itself.
	backend, err := jwpq.New(db, dsn)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := backend.Install(ctx); err != nil { // no-op when PgQueuer installed it
		log.Fatal(err)
	}
	ids, err := backend.Enqueue(ctx, queue.NewJob{Entrypoint: "resize_image", Payload: []byte(`{"id":42}`)})
	if err != nil {
		log.Fatal(err)
	}

	w, err := jobwatch.New(backend)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	state, err := w.Wait(ctx, ids[0])
	if err != nil {
		log.Fatal(err) // watching failed: ctx done, closed, not found
	}
	fmt.Println("job ended:", state) // successful, exception, canceled or deleted
}
