package fake

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestEnqueue(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		wantErr error
	}{
		{"one", 1, nil},
		{"hundred", 100, nil},
		{"zero", 0, ErrInvalidArgument},
		{"negative", -3, ErrInvalidArgument},
		{"too many", MaxBatch + 1, ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			ids, err := b.EnqueueN(testCtx(t), tt.n)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
				if ids != nil || b.Counters().Commits != 0 {
					t.Fatalf("failed Enqueue returned %v, commits %d", ids, b.Counters().Commits)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			if len(ids) != tt.n {
				t.Fatalf("got %d ids, want %d", len(ids), tt.n)
			}
			for i, id := range ids {
				if id != jobwatch.JobID(i+1) {
					t.Fatalf("ids[%d] = %d, want %d", i, id, i+1)
				}
				if st, ok := b.State(id); !ok || st != statemachine.Queued {
					t.Fatalf("State(%d) = %v, %v; want queued", id, st, ok)
				}
			}
			if c := b.Counters().Commits; c != 1 {
				t.Fatalf("commits = %d, want 1", c)
			}
		})
	}
}

func TestCheckCountBounds(t *testing.T) {
	// Enqueue(MaxBatch) itself is too slow under -race to run every time.
	if err := checkCount(MaxBatch); err != nil {
		t.Fatalf("checkCount(MaxBatch) = %v", err)
	}
}

func TestEnqueueIDsContinue(t *testing.T) {
	b := newBackend(t)
	first := enqueue(t, b, 2)
	second := enqueue(t, b, 3)
	if !slices.Equal(first, []jobwatch.JobID{1, 2}) || !slices.Equal(second, []jobwatch.JobID{3, 4, 5}) {
		t.Fatalf("ids %v then %v", first, second)
	}
}

// silent says whether a commit of ev alone notifies nobody: a claim, retry
// or requeue, which the PostgreSQL backends' trigger does not announce.
func silent(ev statemachine.Event) bool {
	return ev == statemachine.Claim || ev == statemachine.Retry || ev == statemachine.Requeue
}

func TestApplyLifecycle(t *testing.T) {
	tests := []struct {
		path []statemachine.Event
		want statemachine.State
	}{
		{[]statemachine.Event{statemachine.Claim}, statemachine.Picked},
		{[]statemachine.Event{statemachine.Claim, statemachine.Complete}, statemachine.Successful},
		{[]statemachine.Event{statemachine.Claim, statemachine.Error}, statemachine.Exception},
		{[]statemachine.Event{statemachine.Claim, statemachine.Cancel}, statemachine.Canceled},
		{[]statemachine.Event{statemachine.Cancel}, statemachine.Canceled},
		{[]statemachine.Event{statemachine.Delete}, statemachine.Deleted},
		{[]statemachine.Event{statemachine.Claim, statemachine.Hold}, statemachine.Failed},
		{[]statemachine.Event{statemachine.Claim, statemachine.Hold, statemachine.Requeue}, statemachine.Queued},
		{[]statemachine.Event{statemachine.Claim, statemachine.Hold, statemachine.Delete}, statemachine.Deleted},
		{[]statemachine.Event{statemachine.Claim, statemachine.Retry, statemachine.Claim}, statemachine.Picked},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			b := newBackend(t)
			s := listen(t, b)
			ids := enqueue(t, b, 3)
			next(t, s)
			for _, ev := range tt.path {
				apply(t, b, ev, ids...)
				if silent(ev) { // an UPDATE, as PostgreSQL's trigger has it
					assertEmpty(t, s)
					continue
				}
				if n := next(t, s); n.Resync || n.IDs != nil {
					t.Fatalf("notification %+v, want an empty hint", n)
				}
			}
			for _, got := range states(t, b, ids...) {
				if got != tt.want {
					t.Fatalf("state %s, want %s", got, tt.want)
				}
			}
			if c := b.Counters().Commits; c != uint64(1+len(tt.path)) {
				t.Fatalf("commits = %d, want %d", c, 1+len(tt.path))
			}
			assertEmpty(t, s)
		})
	}
}

// TestApplyAtomic: a refused Apply changes nothing and notifies nobody.
func TestApplyAtomic(t *testing.T) {
	tests := []struct {
		name    string
		ev      statemachine.Event
		ids     []jobwatch.JobID
		wantErr []error
		wantID  int64 // of the TransitionError, when one is expected
	}{
		{"illegal for one id", statemachine.Claim, []jobwatch.JobID{2, 1, 3}, []error{statemachine.ErrIllegalTransition}, 1},
		{"illegal for every id", statemachine.Complete, []jobwatch.JobID{2, 3}, []error{statemachine.ErrIllegalTransition}, 2},
		{"repeated id, illegal", statemachine.Claim, []jobwatch.JobID{2, 1, 2}, []error{statemachine.ErrIllegalTransition}, 1},
		{"unknown id", statemachine.Claim, []jobwatch.JobID{2, 99}, []error{ErrUnknownJob, statemachine.ErrIllegalTransition}, 99},
		{"zero id", statemachine.Cancel, []jobwatch.JobID{0}, []error{jobwatch.ErrInvalidID, ErrInvalidArgument}, 0},
		{"negative id", statemachine.Cancel, []jobwatch.JobID{2, -1}, []error{jobwatch.ErrInvalidID, ErrInvalidArgument}, 0},
		{"enqueue", statemachine.Enqueue, []jobwatch.JobID{2}, []error{ErrInvalidArgument, statemachine.ErrIllegalTransition}, 0},
		{"no ids", statemachine.Claim, nil, []error{jobwatch.ErrInvalidID, ErrInvalidArgument}, 0},
		{"zero event", 0, []jobwatch.JobID{2}, []error{ErrInvalidArgument, statemachine.ErrUnknownEvent, statemachine.ErrIllegalTransition}, 0},
		{"out of range event", 200, []jobwatch.JobID{2}, []error{ErrInvalidArgument, statemachine.ErrUnknownEvent}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, WithNotifyIDs())
			ids := enqueue(t, b, 3)
			apply(t, b, statemachine.Claim, 1)
			s := listen(t, b)
			before := b.Counters()

			err := b.Apply(testCtx(t), tt.ev, tt.ids...)
			wantErr(t, err, tt.wantErr...)
			if tt.wantID != 0 {
				var te *statemachine.TransitionError
				if !errors.As(err, &te) || te.ID != tt.wantID {
					t.Fatalf("err = %#v, want a *TransitionError for job %d", err, tt.wantID)
				}
			}
			got := states(t, b, ids...)
			want := []statemachine.State{statemachine.Picked, statemachine.Queued, statemachine.Queued}
			if !slices.Equal(got, want) {
				t.Fatalf("states %v, want %v unchanged", got, want)
			}
			if after := b.Counters(); after.Commits != before.Commits || after.NotificationsSent != before.NotificationsSent {
				t.Fatalf("counters moved: %+v -> %+v", before, after)
			}
			assertEmpty(t, s)
			expectMarker(t, b, s)
		})
	}
}

// TestApplyRepeatedID: a repeated id counts once, as on PostgreSQL.
func TestApplyRepeatedID(t *testing.T) {
	b := newBackend(t)
	ids := enqueue(t, b, 2)
	apply(t, b, statemachine.Claim, ids[0], ids[1], ids[0])
	if got := states(t, b, ids...); !slices.Equal(got, []statemachine.State{statemachine.Picked, statemachine.Picked}) {
		t.Fatalf("states %v, want both picked", got)
	}
	if c := b.Counters().Commits; c != 2 {
		t.Fatalf("commits = %d, want 2", c)
	}
}

// TestFolding: one commit is one notification per subscription, however
// many jobs it changed.
func TestFolding(t *testing.T) {
	b := newBackend(t)
	subs := []jobwatch.Subscription{listen(t, b), listen(t, b), listen(t, b)}
	ids := enqueue(t, b, 100)
	apply(t, b, statemachine.Claim, ids...) // silent, as an UPDATE is
	apply(t, b, statemachine.Complete, ids[:50]...)
	for _, s := range subs {
		for range 2 {
			if n := next(t, s); n.Resync || n.IDs != nil {
				t.Fatalf("notification %+v, want an empty hint", n)
			}
		}
		assertEmpty(t, s)
	}
	c := b.Counters()
	if c.Commits != 3 || c.NotificationsSent != 6 {
		t.Fatalf("counters %+v, want 3 commits and 6 notifications", c)
	}
}

func TestNotifyIDs(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	s := listen(t, b)
	ids := enqueue(t, b, 3)
	if n := next(t, s); !slices.Equal(n.IDs, ids) {
		t.Fatalf("IDs %v, want %v", n.IDs, ids)
	}
	apply(t, b, statemachine.Claim, 3, 1) // silent, as an UPDATE is
	apply(t, b, statemachine.Cancel, 3, 1)
	if n := next(t, s); !slices.Equal(n.IDs, []jobwatch.JobID{3, 1}) {
		t.Fatalf("IDs %v, want [3 1]", n.IDs)
	}
}

// TestVisibleBeforeNotified: whenever a notification arrives, the change
// that caused it is already visible to FetchStatuses.
func TestVisibleBeforeNotified(t *testing.T) {
	const jobs = 200
	b := newBackend(t, WithNotifyIDs(), WithBuffer(4*jobs))
	s := listen(t, b)
	ctx := testCtx(t)
	path := []statemachine.Event{statemachine.Claim, statemachine.Complete}
	// The claim notifies nobody; enqueue and completion do. A read may
	// be ahead of its notification, never behind.
	order := []statemachine.State{statemachine.Queued, statemachine.Picked, statemachine.Successful}
	notified := []statemachine.State{statemachine.Queued, statemachine.Successful}

	writerErr := make(chan error, 1)
	go func() {
		writerErr <- func() error {
			for range jobs {
				ids, err := b.EnqueueN(ctx, 1)
				if err != nil {
					return err
				}
				for _, ev := range path {
					if err := b.Apply(ctx, ev, ids...); err != nil {
						return err
					}
				}
			}
			return nil
		}()
	}()

	seen := map[jobwatch.JobID]int{}
	for range jobs * len(notified) {
		n := next(t, s)
		if len(n.IDs) != 1 {
			t.Fatalf("notification %+v, want one id", n)
		}
		id := n.IDs[0]
		atLeast := notified[seen[id]]
		seen[id]++
		got, err := b.FetchStatuses(ctx, n.IDs)
		if err != nil {
			t.Fatalf("FetchStatuses: %v", err)
		}
		if len(got) != 1 || slices.Index(order, got[0].State) < slices.Index(order, atLeast) {
			t.Fatalf("job %d notified as %s but read %v", id, atLeast, got)
		}
	}
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

func TestWriteCtx(t *testing.T) {
	b := newBackend(t)
	ids := enqueue(t, b, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var nilCtx context.Context

	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"canceled", ctx, context.Canceled}, {"nil", nilCtx, ErrInvalidArgument}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.EnqueueN(tc.ctx, 1); !errors.Is(err, tc.want) {
				t.Fatalf("Enqueue: %v, want %v", err, tc.want)
			}
			if err := b.Apply(tc.ctx, statemachine.Claim, ids...); !errors.Is(err, tc.want) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
			if err := b.Tx(tc.ctx, func(*Tx) error { return nil }); !errors.Is(err, tc.want) {
				t.Fatalf("Tx: %v, want %v", err, tc.want)
			}
			if st, _ := b.State(ids[0]); st != statemachine.Queued || b.Counters().Commits != 1 {
				t.Fatalf("state %s, counters %+v: a refused write changed something", st, b.Counters())
			}
		})
	}
}
