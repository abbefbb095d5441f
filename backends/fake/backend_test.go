package fake

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestFetchStatuses(t *testing.T) {
	q, p := statemachine.Queued, statemachine.Picked
	tests := []struct {
		name string
		ids  []jobwatch.JobID
		want []jobwatch.Status
	}{
		{"nil", nil, []jobwatch.Status{}},
		{"empty", []jobwatch.JobID{}, []jobwatch.Status{}},
		{"all", []jobwatch.JobID{1, 2, 3}, []jobwatch.Status{{ID: 1, State: p}, {ID: 2, State: q}, {ID: 3, State: q}}},
		{"input order", []jobwatch.JobID{3, 1}, []jobwatch.Status{{ID: 3, State: q}, {ID: 1, State: p}}},
		{"duplicates", []jobwatch.JobID{2, 2, 1, 2, 1}, []jobwatch.Status{{ID: 2, State: q}, {ID: 1, State: p}}},
		{"unknown", []jobwatch.JobID{4, 99}, []jobwatch.Status{}},
		{"zero and negative", []jobwatch.JobID{0, -1, -9223372036854775808}, []jobwatch.Status{}},
		{"mixed", []jobwatch.JobID{0, 3, 99, 3, -2, 1}, []jobwatch.Status{{ID: 3, State: q}, {ID: 1, State: p}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			enqueue(t, b, 3)
			apply(t, b, statemachine.Claim, 1)
			got, err := b.FetchStatuses(testCtx(t), tt.ids)
			if err != nil {
				t.Fatalf("FetchStatuses: %v", err)
			}
			if got == nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %#v, want %v", got, tt.want)
			}
			wantReads := uint64(1)
			if len(tt.ids) == 0 {
				wantReads = 0
			}
			if c := b.Counters(); c.Reads != wantReads || c.IDsRead != uint64(len(tt.ids)) {
				t.Fatalf("counters %+v, want %d reads of %d ids", c, wantReads, len(tt.ids))
			}
		})
	}
}

func TestFetchStatusesCtx(t *testing.T) {
	b := newBackend(t)
	ids := enqueue(t, b, 1)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	var nilCtx context.Context
	for _, ids := range [][]jobwatch.JobID{ids, nil} {
		if got, err := b.FetchStatuses(canceled, ids); !errors.Is(err, context.Canceled) || got != nil {
			t.Fatalf("FetchStatuses(canceled, %v) = %v, %v", ids, got, err)
		}
		if _, err := b.FetchStatuses(nilCtx, ids); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("FetchStatuses(nil ctx, %v) = %v", ids, err)
		}
	}
	if c := b.Counters(); c.Reads != 0 {
		t.Fatalf("Reads = %d for refused calls", c.Reads)
	}
}

// TestResultIsACopy: callers may keep and modify what they get.
func TestResultIsACopy(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	s1, s2 := listen(t, b), listen(t, b)
	ids := enqueue(t, b, 2)
	ids[0] = 77
	n1 := next(t, s1)
	n1.IDs[0] = 88
	if n2 := next(t, s2); !slices.Equal(n2.IDs, []jobwatch.JobID{1, 2}) {
		t.Fatalf("second subscription got %v", n2.IDs)
	}
	if _, ok := b.State(1); !ok {
		t.Fatal("job 1 vanished")
	}
}
