package fake

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestTxCommit(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	existing := enqueue(t, b, 1)
	s := listen(t, b)
	ctx := testCtx(t)

	var created []jobwatch.JobID
	err := b.Tx(ctx, func(tx *Tx) error {
		var err error
		if created, err = tx.EnqueueN(ctx, 3); err != nil {
			return err
		}
		if err := tx.Apply(ctx, statemachine.Claim, created[0], existing[0]); err != nil {
			return err
		}
		if err := tx.Apply(ctx, statemachine.Complete, created[0]); err != nil {
			return err
		}
		// Uncommitted changes: the transaction sees them, nobody else does.
		if st, ok := tx.State(created[0]); !ok || st != statemachine.Successful {
			t.Errorf("tx.State = %s, %v; want successful", st, ok)
		}
		got, err := b.FetchStatuses(ctx, append([]jobwatch.JobID{existing[0]}, created...))
		if err != nil {
			return err
		}
		if want := []jobwatch.Status{{ID: existing[0], State: statemachine.Queued}}; !slices.Equal(got, want) {
			t.Errorf("FetchStatuses inside the tx = %v, want %v", got, want)
		}
		if _, ok := b.State(created[1]); ok {
			t.Errorf("State sees an uncommitted job")
		}
		if n := pending(s); n != 0 {
			t.Errorf("%d notifications before the commit", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Tx: %v", err)
	}
	got := states(t, b, existing[0], created[0], created[1], created[2])
	want := []statemachine.State{statemachine.Picked, statemachine.Successful, statemachine.Queued, statemachine.Queued}
	if !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	n := next(t, s)
	if wantIDs := []jobwatch.JobID{created[0], created[1], created[2], existing[0]}; !slices.Equal(n.IDs, wantIDs) {
		t.Fatalf("notification %+v, want one naming %v", n, wantIDs)
	}
	assertEmpty(t, s)
	if c := b.Counters().Commits; c != 2 {
		t.Fatalf("commits = %d, want 2", c)
	}
}

// TestTxRollback: a transaction that does not commit changes nothing and
// notifies nobody.
func TestTxRollback(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(ctx context.Context, cancel context.CancelFunc, b *Backend, tx *Tx) error
		wantErr []error
	}{
		{"fn error", func(ctx context.Context, _ context.CancelFunc, _ *Backend, tx *Tx) error {
			if _, err := tx.EnqueueN(ctx, 2); err != nil {
				return err
			}
			if err := tx.Apply(ctx, statemachine.Claim, 1); err != nil {
				return err
			}
			return errBoom
		}, []error{errBoom}},
		{"ctx done before commit", func(ctx context.Context, cancel context.CancelFunc, _ *Backend, tx *Tx) error {
			if err := tx.Apply(ctx, statemachine.Claim, 1); err != nil {
				return err
			}
			cancel()
			return nil
		}, []error{context.Canceled}},
		{"conflict", func(ctx context.Context, _ context.CancelFunc, b *Backend, tx *Tx) error {
			if _, err := tx.EnqueueN(ctx, 1); err != nil {
				return err
			}
			if err := tx.Apply(ctx, statemachine.Claim, 1); err != nil {
				return err
			}
			// Someone else deletes job 1 meanwhile: the claim can no
			// longer commit.
			return b.Apply(ctx, statemachine.Delete, 1)
		}, []error{ErrConflict, statemachine.ErrIllegalTransition}},
		{"closed before commit", func(_ context.Context, _ context.CancelFunc, b *Backend, _ *Tx) error {
			return b.Close()
		}, []error{ErrClosed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, WithNotifyIDs())
			enqueue(t, b, 1)
			s := listen(t, b)
			before := b.Counters()
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()

			err := b.Tx(ctx, func(tx *Tx) error { return tt.fn(ctx, cancel, b, tx) })
			wantErr(t, err, tt.wantErr...)
			if tt.name == "conflict" {
				// Only the concurrent delete committed.
				if st, _ := b.State(1); st != statemachine.Deleted {
					t.Fatalf("job 1 is %s, want deleted", st)
				}
				if _, ok := b.State(2); ok {
					t.Fatal("the rolled-back enqueue is visible")
				}
				next(t, s)
				expectMarker(t, b, s)
				return
			}
			if st, _ := b.State(1); st != statemachine.Queued {
				t.Fatalf("job 1 is %s, want queued", st)
			}
			for id := jobwatch.JobID(2); id <= 3; id++ {
				if _, ok := b.State(id); ok {
					t.Fatalf("rolled-back job %d is visible", id)
				}
			}
			if after := b.Counters(); after.Commits != before.Commits || after.NotificationsSent != before.NotificationsSent {
				t.Fatalf("counters moved: %+v -> %+v", before, after)
			}
			if tt.name != "closed before commit" {
				assertEmpty(t, s)
				expectMarker(t, b, s)
			}
		})
	}
}

func TestTxSequenceNotRolledBack(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	_ = b.Tx(ctx, func(tx *Tx) error {
		_, _ = tx.EnqueueN(ctx, 2)
		return errors.New("roll back")
	})
	if ids := enqueue(t, b, 1); ids[0] != 3 {
		t.Fatalf("id after a rolled-back enqueue of 2 = %d, want 3 (a gap)", ids[0])
	}
}

func TestTxEmptyCommitsNothing(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	s := listen(t, b)
	ctx := testCtx(t)
	if err := b.Tx(ctx, func(*Tx) error { return nil }); err != nil {
		t.Fatalf("Tx: %v", err)
	}
	// A refused Apply inside a transaction stages nothing either.
	err := b.Tx(ctx, func(tx *Tx) error {
		wantErr(t, tx.Apply(ctx, statemachine.Claim, 7), ErrUnknownJob)
		return nil
	})
	if err != nil {
		t.Fatalf("Tx: %v", err)
	}
	if c := b.Counters().Commits; c != 0 {
		t.Fatalf("commits = %d, want 0", c)
	}
	assertEmpty(t, s)
}

// TestTxApplyAtomic: a refused Apply inside a transaction stages nothing,
// and the rest of the transaction still commits.
func TestTxApplyAtomic(t *testing.T) {
	b := newBackend(t)
	ids := enqueue(t, b, 2)
	ctx := testCtx(t)
	err := b.Tx(ctx, func(tx *Tx) error {
		if err := tx.Apply(ctx, statemachine.Claim, ids[0]); err != nil {
			return err
		}
		wantErr(t, tx.Apply(ctx, statemachine.Complete, ids[1], ids[0]), statemachine.ErrIllegalTransition)
		return tx.Apply(ctx, statemachine.Complete, ids[0])
	})
	if err != nil {
		t.Fatalf("Tx: %v", err)
	}
	if got := states(t, b, ids...); !slices.Equal(got, []statemachine.State{statemachine.Successful, statemachine.Queued}) {
		t.Fatalf("states %v", got)
	}
}

func TestTxMisuse(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	enqueue(t, b, 1)

	wantErr(t, b.Tx(ctx, nil), ErrInvalidArgument)

	var leaked *Tx
	if err := b.Tx(ctx, func(tx *Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatalf("Tx: %v", err)
	}
	_, err := leaked.EnqueueN(ctx, 1)
	wantErr(t, err, ErrTxDone)
	wantErr(t, leaked.Apply(ctx, statemachine.Claim, 1), ErrTxDone)
	if _, ok := leaked.State(1); ok {
		t.Fatal("State of a finished Tx reports a job")
	}

	err = b.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.EnqueueN(ctx, 0); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("tx.EnqueueN(0): %v", err)
		}
		if err := tx.Apply(ctx, statemachine.Enqueue, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("tx.Apply(Enqueue): %v", err)
		}
		var nilCtx context.Context
		if err := tx.Apply(nilCtx, statemachine.Claim, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("tx.Apply(nil ctx): %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Tx: %v", err)
	}

	// A panicking fn rolls back and leaves the Backend usable.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic did not propagate")
			}
		}()
		_ = b.Tx(ctx, func(tx *Tx) error {
			_ = tx.Apply(ctx, statemachine.Claim, 1)
			panic("boom")
		})
	}()
	if st, _ := b.State(1); st != statemachine.Queued {
		t.Fatalf("job 1 is %s after a panicking Tx, want queued", st)
	}
	apply(t, b, statemachine.Claim, 1)
}
