package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// The cases of RunQueue that race calls against each other.

// runDedupeRace: enqueuers keep asking for one dedupe key, alone and in a
// batch, while a worker keeps claiming and completing whoever holds it.
// Every enqueue either succeeds or names the holder, a job that was really
// enqueued with the key (ID 0 is allowed only when holders kept ending
// faster than the enqueue could be retried), and every holder named can be
// waited on: it ends, here successful.
func runDedupeRace(t *testing.T, q queue.Queue, timeout time.Duration) {
	const (
		key       = "race"
		ep        = "conf-race"
		enqueuers = 4
		attempts  = 25 // per enqueuer
	)
	ctx, cancel := context.WithTimeout(context.Background(), 6*timeout)
	defer cancel()
	first, err := q.Enqueue(ctx, queue.NewJob{Entrypoint: ep, DedupeKey: key})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	var dup *queue.DuplicateError
	if _, err := q.Enqueue(ctx, queue.NewJob{Entrypoint: ep}, queue.NewJob{Entrypoint: ep, DedupeKey: key}); !errors.As(err, &dup) ||
		*dup != (queue.DuplicateError{Index: 1, Key: key, ID: first[0]}) {
		t.Fatalf("batch Enqueue of a held key = %v, want index 1 held by %d", err, first[0])
	}

	var (
		mu       sync.Mutex
		enqueued = map[jobwatch.JobID]bool{first[0]: true}
		holders  = map[jobwatch.JobID]bool{}
		noHolder int
	)
	stop := make(chan struct{})
	var worker sync.WaitGroup
	worker.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			jobs, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{ep}, Limit: 10})
			if err == nil && len(jobs) > 0 {
				ids := make([]jobwatch.JobID, len(jobs))
				for i, j := range jobs {
					ids[i] = j.ID
				}
				err = q.Complete(ctx, ids...)
			}
			if err != nil {
				t.Errorf("worker: %v", err)
				return
			}
		}
	})
	var enq sync.WaitGroup
	for e := range enqueuers {
		enq.Go(func() {
			for i := range attempts {
				jobs := []queue.NewJob{{Entrypoint: ep, DedupeKey: key}}
				if (e+i)%2 == 1 {
					jobs = []queue.NewJob{{Entrypoint: ep}, {Entrypoint: ep, DedupeKey: key}}
				}
				ids, err := q.Enqueue(ctx, jobs...)
				var dup *queue.DuplicateError
				mu.Lock()
				switch {
				case err == nil:
					enqueued[ids[len(ids)-1]] = true
				case errors.As(err, &dup) && dup.Index == len(jobs)-1 && dup.Key == key:
					if dup.ID == 0 {
						noHolder++
					} else {
						holders[dup.ID] = true
					}
				default:
					t.Errorf("Enqueue = %v, want success or the holder of %q", err, key)
				}
				mu.Unlock()
			}
		})
	}
	enq.Wait()
	close(stop)
	worker.Wait()
	// Finish what the worker left.
	for {
		jobs, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{ep}, Limit: 100})
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if len(jobs) == 0 {
			break
		}
		for _, j := range jobs {
			if err := q.Complete(ctx, j.ID); err != nil {
				t.Fatalf("Complete: %v", err)
			}
		}
	}
	for id := range holders {
		if !enqueued[id] {
			t.Errorf("a dedupe conflict named job %d, which no enqueue of the key created", id)
			continue
		}
		info, err := q.Inspect(ctx, id)
		if err != nil || info.State != sm.Successful {
			t.Errorf("holder %d: Inspect = %s, %v; want it ended successful", id, info.State, err)
		}
	}
	t.Logf("%d enqueues of one key by %d goroutines: %d succeeded, %d named a holder (%d distinct), %d named none",
		enqueuers*attempts, enqueuers, len(enqueued)-1, enqueuers*attempts-len(enqueued)+1-noHolder, len(holders), noHolder)
}

// runClaimRace: claimers racing for the same jobs each get distinct ones,
// and together all of them.
func runClaimRace(t *testing.T, q queue.Queue, timeout time.Duration) {
	const (
		jobs     = 60
		claimers = 4
		ep       = "conf-claim"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	batch := make([]queue.NewJob, jobs)
	for i := range batch {
		batch[i] = queue.NewJob{Entrypoint: ep, Priority: i % 3}
	}
	ids, err := q.Enqueue(ctx, batch...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	var mu sync.Mutex
	got := map[jobwatch.JobID]int{}
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for {
				claimed, err := q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{ep}, Limit: 3})
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(claimed) == 0 {
					return
				}
				mu.Lock()
				for _, j := range claimed {
					got[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("job %d was claimed %d times, want once", id, got[id])
		}
	}
	if len(got) != len(ids) {
		t.Errorf("claims returned %d jobs, want the %d enqueued", len(got), len(ids))
	}
}
