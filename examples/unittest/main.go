// Command unittest shows how to unit-test your own code that waits for
// jobs. service.go is that code (ProcessOrder); service_test.go tests it on
// backends/fake, with no database, including lost notifications and failing
// reads:
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
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

func main() {
	log.SetFlags(0)
	ctx := context.Background()
	backend := fake.New()
	defer backend.Close()
	w, err := jobwatch.New(backend)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	// How the pretend worker ends each order; "lost-parcel" it never ends.
	outcome := map[string]statemachine.Event{"book": statemachine.Complete, "bad-card": statemachine.Error}
	q := &fakeQueue{backend: backend, work: func(id jobwatch.JobID, order string) {
		ev, ok := outcome[order]
		if !ok {
			return
		}
		if err := backend.Apply(ctx, statemachine.Claim, id); err != nil {
			log.Print(err)
			return
		}
		if err := backend.Apply(ctx, ev, id); err != nil {
			log.Print(err)
		}
	}}
	defer q.workers.Wait()

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
