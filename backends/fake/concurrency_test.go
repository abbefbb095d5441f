package fake

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// TestConcurrentUse hammers every entry point at once; -race and goleak
// do the checking, along with the invariant that terminal jobs stay
// terminal.
func TestConcurrentUse(t *testing.T) {
	b := New(WithBuffer(8))
	ctx := testCtx(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	run(func(i int) { // a worker: enqueue, claim, finish
		ids, err := b.EnqueueN(ctx, 1+i%5)
		if err != nil {
			return
		}
		_ = b.Apply(ctx, statemachine.Claim, ids...)
		_ = b.Apply(ctx, statemachine.Complete, ids...)
	})
	run(func(i int) { // transactions, some rolled back
		_ = b.Tx(ctx, func(tx *Tx) error {
			ids, err := tx.EnqueueN(ctx, 2)
			if err != nil {
				return err
			}
			_ = tx.Apply(ctx, statemachine.Cancel, ids[0])
			_ = tx.Apply(ctx, statemachine.Claim, jobwatch.JobID(i%50+1))
			if i%3 == 0 {
				return errors.New("rollback")
			}
			return nil
		})
	})
	run(func(i int) { // a reader
		_, _ = b.FetchStatuses(ctx, []jobwatch.JobID{jobwatch.JobID(i % 100), 1, 2, 3})
		_ = b.Counters()
	})
	run(func(i int) { // a listener that reconnects
		s, err := b.Listen(ctx)
		if err != nil {
			return
		}
		for range 10 {
			nctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			_, err := s.Next(nctx)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				break
			}
		}
		s.Close()
	})
	run(func(i int) { // faults
		switch i % 9 {
		case 0:
			b.DropNotifications(2)
		case 1:
			b.DuplicateNotifications(2)
		case 2:
			b.DelayNotifications(time.Duration(i%3) * time.Millisecond)
		case 3:
			b.FailReads(1, nil)
		case 4:
			b.FailListens(1, nil)
		case 5:
			b.Disconnect()
		case 6:
			b.InjectGarbage(2)
		case 7:
			b.Notify(`{"type":"table_changed_event"}`)
		case 8:
			release := b.BlockReads()
			release()
		}
	})

	// Let everything run until a fair amount of work was done.
	if err := b.WaitReads(ctx, 2000); err != nil {
		t.Fatalf("WaitReads: %v", err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = b.Close() // with everything still running
	}()
	<-closed
	close(stop)
	wg.Wait()

	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.store.jobs {
		if st := r.job.Status; !st.Valid() || id <= 0 || id > b.nextID {
			t.Fatalf("job %d has state %v", id, st)
		}
	}
}
