package fake_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/statemachine"
)

// outcome is the code under test: it reports how a job ended, or that it
// has not ended yet. It only knows the jobwatch.Driver interface.
func outcome(ctx context.Context, d jobwatch.Driver, id jobwatch.JobID) (string, error) {
	st, err := d.FetchStatuses(ctx, []jobwatch.JobID{id})
	if err != nil {
		return "", err
	}
	if len(st) == 0 {
		return "unknown", nil
	}
	if !st[0].State.Terminal() {
		return "running", nil
	}
	return st[0].State.String(), nil
}

// A unit test drives the fake through the job lifecycle, as workers would,
// and checks what the code under test makes of it.
func Example() {
	ctx := context.Background()
	b := fake.New()
	defer b.Close()

	ids, _ := b.EnqueueN(ctx, 2)                    // jobs 1 and 2, queued
	_ = b.Apply(ctx, statemachine.Claim, ids...)    // a worker picks both
	_ = b.Apply(ctx, statemachine.Complete, ids[0]) // job 1 succeeds

	for _, id := range []jobwatch.JobID{1, 2, 3} {
		got, _ := outcome(ctx, b, id)
		fmt.Println(id, got)
	}

	// Illegal transitions are refused, and change nothing.
	err := b.Apply(ctx, statemachine.Claim, ids[0])
	fmt.Println(errors.Is(err, statemachine.ErrIllegalTransition))

	// Faults: the next read fails.
	b.FailReads(1, nil)
	_, err = outcome(ctx, b, 1)
	fmt.Println(errors.Is(err, fake.ErrInjected))
	// Output:
	// 1 successful
	// 2 running
	// 3 unknown
	// true
	// true
}

// Subscriptions receive one hint per commit; a lost connection fails them,
// and the client must listen again and re-read.
func ExampleBackend_Listen() {
	ctx := context.Background()
	b := fake.New()
	defer b.Close()

	sub, _ := b.Listen(ctx)
	ids, _ := b.EnqueueN(ctx, 100) // one commit, one notification
	n, _ := sub.Next(ctx)
	fmt.Printf("%+v\n", n)

	b.Disconnect()
	_, err := sub.Next(ctx)
	fmt.Println(errors.Is(err, fake.ErrDisconnected))
	sub.Close()

	sub, _ = b.Listen(ctx)
	defer sub.Close()
	_ = b.Apply(ctx, statemachine.Delete, ids...)
	n, _ = sub.Next(ctx)
	fmt.Printf("%+v %d\n", n, b.Counters().Commits)
	// Output:
	// {IDs:[] Resync:false}
	// true
	// {IDs:[] Resync:false} 2
}
