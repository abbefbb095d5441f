package jobwatch_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// work plays a queue worker: it claims each job and ends it with ev.
func work(ctx context.Context, queue *fake.Backend, ev statemachine.Event, ids ...jobwatch.JobID) {
	_ = queue.Apply(ctx, statemachine.Claim, ids...)
	_ = queue.Apply(ctx, ev, ids...)
}

func ExampleWatcher_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue := fake.New() // in production: backends/pgx or backends/pq
	defer queue.Close()
	w, err := jobwatch.New(queue)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	ids, _ := queue.EnqueueN(ctx, 1)
	go work(ctx, queue, statemachine.Complete, ids...)

	state, err := w.Wait(ctx, ids[0])
	fmt.Println(state, err)
	// Output: successful <nil>
}

func ExampleWatcher_WaitAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	ids, _ := queue.EnqueueN(ctx, 3)
	go func() {
		work(ctx, queue, statemachine.Complete, ids[0])
		work(ctx, queue, statemachine.Error, ids[1])
		_ = queue.Apply(ctx, statemachine.Cancel, ids[2])
	}()

	states, err := w.WaitAll(ctx, []jobwatch.JobID{ids[2], ids[0], ids[1], ids[0]})
	fmt.Println(states, err)
	// Output: [canceled successful exception successful] <nil>
}

func ExampleWatcher_WaitAny() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue)
	if err != nil {
		panic(err)
	}
	defer w.Close()

	ids, _ := queue.EnqueueN(ctx, 3)
	go work(ctx, queue, statemachine.Complete, ids[1])

	first, err := w.WaitAny(ctx, ids)
	fmt.Println(first.ID == ids[1], first.State, err)
	// Output: true successful <nil>
}

func ExampleNotFoundError() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue, jobwatch.WithNotFoundGrace(10*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer w.Close()

	_, err = w.Wait(ctx, 12345)
	fmt.Println(errors.Is(err, jobwatch.ErrNotFound), err)
	// Output: true jobwatch: job not found: 12345
}

func ExampleWatcher_WaitEach() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue, jobwatch.WithNotFoundGrace(10*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer w.Close()

	ids, _ := queue.EnqueueN(ctx, 1)
	work(ctx, queue, statemachine.Error, ids...)

	for st, err := range w.WaitEach(ctx, []jobwatch.JobID{ids[0], 999}) {
		if err != nil {
			fmt.Println(st.ID, err)
			continue
		}
		fmt.Println(st)
	}
	// Output:
	// 1 exception
	// 999 jobwatch: job not found: 999
}

// A handler that waits with a deadline can tell "still running" from "the
// database cannot be read": the WaitError says what was last seen.
func ExampleWaitError() {
	queue := fake.New()
	defer queue.Close()
	w, err := jobwatch.New(queue)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	ids, _ := queue.EnqueueN(context.Background(), 1)
	_ = queue.Apply(context.Background(), statemachine.Claim, ids[0])

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = w.Wait(ctx, ids[0])
	var we *jobwatch.WaitError
	switch {
	case errors.As(err, &we) && we.DriverErr != nil:
		fmt.Println("database trouble:", we.DriverErr)
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Println("still", we.LastState)
	}
	// Output: still picked
}
