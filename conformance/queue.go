package conformance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// RunQueue runs the write-side conformance check against the queue.Queue
// that newQueue makes: a fresh, empty, isolated queue on every call (its own
// schema, prefix or in-memory instance), whose cleanup newQueue registers
// with t.Cleanup. Nothing else may write to it while a case runs.
//
// Its "script" case makes one fixed sequence of calls (enqueues with every
// field, dedupe conflicts, claims, heartbeats, each transition legal and
// illegal, tracebacks, inspections) and compares each result and error,
// rendered as text (ids by name, errors by the sentinels they match and
// the fields of their typed errors), with the one expected: two
// implementations that pass return the same results for the same calls.
// Its other cases check what one script cannot: that a dedupe conflict
// names a holder that can be waited on while holders finish concurrently,
// and that concurrent claims never share a job.
//
//	func TestQueueConformance(t *testing.T) {
//		conformance.RunQueue(t, func(t *testing.T) queue.Queue {
//			return mybackend.OpenTestSchema(t) // fresh and isolated
//		})
//	}
//
// Every call is bounded by the suite timeout (JOBWATCH_CONFORMANCE_TIMEOUT).
func RunQueue(t *testing.T, newQueue func(t *testing.T) queue.Queue) {
	t.Helper()
	if newQueue == nil {
		t.Fatal("conformance: newQueue is nil")
	}
	timeout := suiteTimeout(t)
	for _, c := range []struct {
		name string
		run  func(t *testing.T, q queue.Queue, timeout time.Duration)
	}{
		{"script", runScript},
		{"dedupe_holder_finishes", runDedupeRace},
		{"claim_concurrent", runClaimRace},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := newQueue(t)
			if q == nil {
				t.Fatal("conformance: newQueue returned nil")
			}
			c.run(t, q, timeout)
		})
	}
}

// script is the state of the script case: the queue, and the names of the
// ids it has seen.
type script struct {
	t       *testing.T
	q       queue.Queue
	timeout time.Duration
	names   map[jobwatch.JobID]string
	ids     map[string]jobwatch.JobID
}

// unknownID is an id no queue under test has handed out.
const unknownID jobwatch.JobID = 1 << 60

func (s *script) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// bind names the ids an enqueue returned, in order.
func (s *script) bind(ids []jobwatch.JobID, names ...string) {
	if len(ids) != len(names) {
		return
	}
	for i, id := range ids {
		s.names[id], s.ids[names[i]] = names[i], id
	}
}

func (s *script) id(name string) jobwatch.JobID {
	if id, ok := s.ids[name]; ok {
		return id
	}
	s.t.Fatalf("conformance: the script names job %q, which an earlier step did not create", name)
	return 0
}

func (s *script) of(names ...string) []jobwatch.JobID {
	out := make([]jobwatch.JobID, len(names))
	for i, n := range names {
		out[i] = s.id(n)
	}
	return out
}

// name renders an id: its name, "unknown" for unknownID, else the number
// ("#n" when positive).
func (s *script) name(id jobwatch.JobID) string {
	if n, ok := s.names[id]; ok {
		return n
	}
	switch {
	case id == unknownID:
		return "unknown"
	case id <= 0:
		return fmt.Sprint(int64(id))
	}
	return fmt.Sprintf("#%d", int64(id))
}

// expand replaces {{name}} in an expected result with the named job's id.
func (s *script) expand(want string) string {
	for name, id := range s.ids {
		want = strings.ReplaceAll(want, "{{"+name+"}}", fmt.Sprint(int64(id)))
	}
	return want
}

// sentinels are the errors a result is rendered by, in this order.
var sentinels = []struct {
	name string
	err  error
}{
	{"ErrInvalidID", jobwatch.ErrInvalidID},
	{"ErrInvalidJob", queue.ErrInvalidJob},
	{"ErrUnknownJob", queue.ErrUnknownJob},
	{"ErrDuplicate", queue.ErrDuplicate},
	{"ErrNotPicked", queue.ErrNotPicked},
	{"ErrIllegalTransition", sm.ErrIllegalTransition},
	{"ErrUnknownEvent", sm.ErrUnknownEvent},
}

// err renders an error: "ok", or the sentinels it matches and the fields of
// the typed errors it holds.
func (s *script) err(err error) string {
	if err == nil {
		return "ok"
	}
	var matched []string
	for _, x := range sentinels {
		if errors.Is(err, x.err) {
			matched = append(matched, x.name)
		}
	}
	out := "err[" + strings.Join(matched, " ") + "]"
	var te *sm.TransitionError
	if errors.As(err, &te) {
		out += fmt.Sprintf(" transition{job=%s from=%s event=%s}", s.name(jobwatch.JobID(te.ID)), te.From, te.Event)
	}
	var dup *queue.DuplicateError
	if errors.As(err, &dup) {
		holder := "0"
		if dup.ID != 0 {
			holder = s.name(dup.ID)
		}
		out += fmt.Sprintf(" dup{index=%d key=%s holder=%s}", dup.Index, dup.Key, holder)
	}
	var np *queue.NotPickedError
	if errors.As(err, &np) {
		out += fmt.Sprintf(" notpicked{job=%s state=%s}", s.name(np.ID), np.State)
	}
	if len(matched) == 0 {
		out += " " + err.Error() // an error no caller can match
	}
	return out
}

// enqueued renders an enqueue's result, binding names to the ids.
func (s *script) enqueued(ids []jobwatch.JobID, err error, names ...string) string {
	if err != nil {
		return s.err(err)
	}
	if len(ids) != len(names) {
		return fmt.Sprintf("ok, %d ids for %d jobs", len(ids), len(names))
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) || ids[0] <= 0 {
		return fmt.Sprintf("ok, ids %v not positive, distinct and ascending", ids)
	}
	s.bind(ids, names...)
	return "ok " + strings.Join(names, " ")
}

// job renders a queue row (times are checked by the steps that care).
func (s *script) job(j *queue.Job) string {
	if j == nil {
		return "none"
	}
	qm := "-"
	if j.QueueManagerID != ([16]byte{}) {
		qm = hex.EncodeToString(j.QueueManagerID[:2])
	}
	return fmt.Sprintf("{%s ep=%s prio=%d status=%s attempts=%d key=%s payload=%s headers=%s qm=%s}",
		s.name(j.ID), j.Entrypoint, j.Priority, j.Status, j.Attempts, j.DedupeKey, payload(j.Payload), canonical(j.Headers), qm)
}

func payload(p []byte) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprintf("%q", p)
}

// canonical renders JSON by its value, whatever its spacing and key order
// (PostgreSQL's jsonb prints neither as it was given).
func canonical(raw []byte) string {
	if raw == nil {
		return "null"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Sprintf("invalid JSON %q", raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// claimed renders a claim's result.
func (s *script) claimed(jobs []queue.Job, err error) string {
	if err != nil {
		return s.err(err)
	}
	parts := make([]string, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		parts[i] = s.job(j)
		if !j.Heartbeat.Equal(j.Updated) || j.Updated.Before(j.Created) {
			parts[i] += fmt.Sprintf(" (times: created %v, updated %v, heartbeat %v: want heartbeat = updated >= created)",
				j.Created, j.Updated, j.Heartbeat)
		}
	}
	return "ok [" + strings.Join(parts, " ") + "]"
}

// inspect renders Inspect's result.
func (s *script) inspect(name string) string {
	id := unknownID
	if name != "unknown" {
		id = s.id(name)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	info, err := s.q.Inspect(ctx, id)
	if err != nil {
		return s.err(err)
	}
	var hist []string
	for i, tr := range info.History {
		h := tr.State.String()
		if tr.Traceback != nil {
			h += "+tb"
		}
		if tr.At.IsZero() || (i > 0 && tr.At.Before(info.History[i-1].At)) {
			h += "(!time)"
		}
		if info.Job != nil && (tr.Entrypoint != info.Job.Entrypoint || tr.Priority != info.Job.Priority) {
			h += "(!entrypoint/priority)"
		}
		hist = append(hist, h)
	}
	out := fmt.Sprintf("state=%s job=%s history=[%s]", info.State, s.job(info.Job), strings.Join(hist, " "))
	if info.ID != id {
		out += fmt.Sprintf(" (ID %d)", info.ID)
	}
	if info.Truncated {
		out += " truncated"
	}
	if tb := info.Traceback(); tb != nil {
		out += " tb=" + s.traceback(tb)
	}
	return out
}

// traceback renders a parsed traceback, its Raw by value. A timestamp
// Exception filled in (within an hour of now) renders as "now", and as
// "{{ts}}" in Raw.
func (s *script) traceback(tb *queue.Traceback) string {
	ts, raw := "zero", canonical(tb.Raw)
	if !tb.Timestamp.IsZero() {
		ts = tb.Timestamp.UTC().Format(time.RFC3339Nano)
		if d := time.Since(tb.Timestamp); d > -time.Hour && d < time.Hour {
			ts = "now"
			var fields map[string]any
			if json.Unmarshal(tb.Raw, &fields) == nil {
				fields["timestamp"] = "{{ts}}"
				b, _ := json.Marshal(fields)
				raw = string(b)
			}
		}
	}
	ctxJSON, _ := json.Marshal(tb.AdditionalContext)
	return fmt.Sprintf("{job=%s ts=%s type=%s msg=%s traceback=%q context=%s raw=%s}", s.name(tb.JobID), ts,
		tb.ExceptionType, tb.ExceptionMessage, tb.Traceback, ctxJSON, raw)
}

// times checks a job's times against an expectation, rendering "ok" or
// what is off.
func (s *script) times(name string, check func(j queue.Job) string) string {
	ctx, cancel := s.ctx()
	defer cancel()
	info, err := s.q.Inspect(ctx, s.id(name))
	if err != nil {
		return s.err(err)
	}
	if info.Job == nil {
		return "no queue row"
	}
	return check(*info.Job)
}
