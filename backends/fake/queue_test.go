package fake

import (
	"errors"
	"testing"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The queue.Queue methods' results are checked against the PostgreSQL
// backends' by conformance.RunQueue (conformance/queue_test.go runs it on
// the fake); these tests pin what is the fake's own: notifications,
// counters and the change feed.

// TestHeartbeatIsNotACommit: a heartbeat changes no state, so it notifies
// nobody, does not count as a commit and does not feed the change feed, as
// on PostgreSQL where the trigger sends nothing for it.
func TestHeartbeatIsNotACommit(t *testing.T) {
	b := newBackend(t, WithNotifyIDs())
	ctx := testCtx(t)
	ids := enqueue(t, b, 1)
	apply(t, b, statemachine.Claim, ids...)
	s := listen(t, b)
	set, err := b.Changes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := b.Counters()
	if err := b.Heartbeat(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	if after := b.Counters(); after.Commits != before.Commits || after.NotificationsSent != before.NotificationsSent {
		t.Fatalf("a heartbeat moved the counters: %+v -> %+v", before, after)
	}
	assertEmpty(t, s)
	if next, err := b.Changes(ctx, set.Cursor); err != nil || len(next.Statuses) != 0 {
		t.Fatalf("the change feed after a heartbeat: %+v, %v", next, err)
	}
	expectMarker(t, b, s)
}

// TestInspectIsNotARead: Inspect does not count as a status read and the
// read faults do not touch it; what it returns is the caller's to change.
func TestInspectIsNotARead(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	ids, err := b.Enqueue(ctx, queue.NewJob{Entrypoint: "e", Payload: []byte("p"), Headers: map[string]any{"a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	b.FailReads(1, nil)
	release := b.BlockReads()
	defer release()
	info, err := b.Inspect(ctx, ids[0])
	if err != nil || b.Counters().Reads != 0 {
		t.Fatalf("Inspect = %v with %d reads counted", err, b.Counters().Reads)
	}
	info.Job.Payload[0], info.Job.Headers[0], info.History[0].State = 'x', 'x', statemachine.Deleted
	again, _ := b.Inspect(ctx, ids[0])
	if string(again.Job.Payload) != "p" || string(again.Job.Headers) != `{"a":1}` || again.History[0].State != statemachine.Queued {
		t.Fatalf("changing Inspect's result changed the store: %+v", again)
	}
	if _, err := b.Inspect(ctx, 99); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("Inspect(99) = %v", err)
	}
}

// TestTxSeesJobs: a transaction's enqueues and transitions build real
// records, committed together.
func TestTxSeesJobs(t *testing.T) {
	b := newBackend(t)
	ctx := testCtx(t)
	var ids []jobwatch.JobID
	err := b.Tx(ctx, func(tx *Tx) error {
		var err error
		if ids, err = tx.EnqueueN(ctx, 2); err != nil {
			return err
		}
		return tx.Apply(ctx, statemachine.Claim, ids[0])
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.Inspect(ctx, ids[0])
	if err != nil || info.State != statemachine.Picked || info.Job.Entrypoint != DefaultEntrypoint || len(info.History) != 2 {
		t.Fatalf("Inspect after the Tx = %+v, %v", info, err)
	}
}
