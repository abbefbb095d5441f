package queue_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/queue"
)

// After Wait says "exception", one more call, Inspect, says why: the
// worker's traceback, and the job's history.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := fake.New() // in production: backends/pgx or backends/pq
	defer q.Close()
	w, err := jobwatch.New(q)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	ids, _ := q.Enqueue(ctx, queue.NewJob{Entrypoint: "resize", Payload: []byte("cat.png")})
	go func() { // a worker
		jobs, _ := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"resize"}, Limit: 1})
		for _, j := range jobs {
			_ = q.Exception(ctx, j.ID, queue.TracebackOf(fmt.Errorf("%s: not a PNG file", j.Payload)))
		}
	}()

	state, err := w.Wait(ctx, ids[0])
	fmt.Println(state, err)
	info, err := q.Inspect(ctx, ids[0])
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Traceback().ExceptionMessage)
	for _, tr := range info.History {
		fmt.Print(tr.State, " ")
	}
	fmt.Println()
	// Output:
	// exception <nil>
	// cat.png: not a PNG file
	// queued picked exception
}

// A dedupe conflict names the job that holds the key: wait on it instead.
func ExampleDuplicateError() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := fake.New()
	defer q.Close()
	w, err := jobwatch.New(q)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	report := queue.NewJob{Entrypoint: "monthly_report", DedupeKey: "2025-05"}
	first, _ := q.Enqueue(ctx, report)

	_, err = q.Enqueue(ctx, report) // asked for again while the first is queued
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) {
		panic(err)
	}
	fmt.Println(dup.ID == first[0], dup.Key)

	go func() { // a worker ends the first one
		jobs, _ := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"monthly_report"}, Limit: 1})
		for _, j := range jobs {
			_ = q.Complete(ctx, j.ID)
		}
	}()
	state, err := w.Wait(ctx, dup.ID)
	fmt.Println(state, err)
	// Output:
	// true 2025-05
	// successful <nil>
}
