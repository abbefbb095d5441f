// Command unittest shows how to unit-test your own code that enqueues jobs
// and waits for them. service.go is that code (ProcessOrder, WaitOrder),
// written against queue.Queue and a jobwatch.Watcher; service_test.go tests
// it on backends/fake through jobwatchtest, with no database, including
// lost notifications, failing reads and unknown ids, each in milliseconds:
//
//	go test ./examples/unittest
//
// main runs ProcessOrder on the fake backend with a pretend worker, so that
// `go run ./examples/unittest` has something to show.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/queue"
)

func main() {
	log.SetFlags(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := fake.New() // in production: backends/pgx or backends/pq
	defer q.Close()
	w, err := jobwatch.New(q)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	var worker sync.WaitGroup
	worker.Go(func() { work(ctx, q) })
	defer worker.Wait()
	defer cancel()

	for _, order := range []string{"book", "bad-card", "lost-parcel"} {
		id, err := ProcessOrder(ctx, w, q, order, 300*time.Millisecond)
		switch {
		case err == nil:
			fmt.Printf("order %s: done (job %d)\n", order, id)
		case errors.Is(err, ErrRejected), errors.Is(err, ErrTimeout):
			fmt.Println(err) // it names the order and the job
		default:
			log.Fatal(err)
		}
	}
	fmt.Println("the tests of ProcessOrder are in service_test.go: go test ./examples/unittest")
}

// work is the pretend worker: it claims orders until ctx ends, completes
// "book", fails "bad-card" with a reason, and never finishes
// "lost-parcel".
func work(ctx context.Context, q queue.Queue) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		jobs, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{Entrypoint}, Limit: 10})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, j := range jobs {
			switch string(j.Payload) {
			case "book":
				err = q.Complete(ctx, j.ID)
			case "bad-card":
				err = q.Exception(ctx, j.ID, queue.TracebackOf(errors.New("card declined")))
			}
			if err != nil && ctx.Err() == nil {
				log.Fatal(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
