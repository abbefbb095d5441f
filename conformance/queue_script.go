package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	sm "github.com/jobwatch/jobwatch/statemachine"
)

// The script of RunQueue: its steps, each a call and the result every
// implementation must render.

type scriptStep struct {
	name string
	do   func(s *script, ctx context.Context) string
	want string
}

var qmID = [16]byte{0xab, 0xcd, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// tbAt is the timestamp of the script's tracebacks.
var tbAt = time.Date(2025, 5, 1, 10, 0, 0, 123456000, time.UTC)

func runScript(t *testing.T, q queue.Queue, timeout time.Duration) {
	s := &script{t: t, q: q, timeout: timeout, names: map[jobwatch.JobID]string{}, ids: map[string]jobwatch.JobID{}}
	for i, st := range scriptSteps() {
		ctx, cancel := s.ctx()
		got := st.do(s, ctx)
		cancel()
		if want := s.expand(st.want); got != want {
			t.Errorf("step %d, %s:\n got  %s\n want %s", i+1, st.name, got, want)
		}
	}
}

// ev is a transition method of queue.Queue by event.
func ev(q queue.Queue, e sm.Event) func(context.Context, ...jobwatch.JobID) error {
	switch e {
	case sm.Complete:
		return q.Complete
	case sm.Cancel:
		return q.Cancel
	case sm.Hold:
		return q.Hold
	case sm.Retry:
		return q.Retry
	case sm.Requeue:
		return q.Requeue
	case sm.Delete:
		return q.Delete
	}
	return nil
}

// apply is a step applying e to the named jobs (names may include
// "unknown" and the literal ids "0" and "-1").
func apply(e sm.Event, names ...string) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string {
		return s.err(ev(s.q, e)(ctx, s.literal(names)...))
	}
}

func (s *script) literal(names []string) []jobwatch.JobID {
	out := make([]jobwatch.JobID, len(names))
	for i, n := range names {
		switch n {
		case "unknown":
			out[i] = unknownID
		case "0":
			out[i] = 0
		case "-1":
			out[i] = -1
		default:
			out[i] = s.id(n)
		}
	}
	return out
}

func heartbeat(names ...string) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string { return s.err(s.q.Heartbeat(ctx, s.literal(names)...)) }
}

func inspect(name string) func(s *script, _ context.Context) string {
	return func(s *script, _ context.Context) string { return s.inspect(name) }
}

func enqueue(names []string, jobs ...queue.NewJob) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string {
		ids, err := s.q.Enqueue(ctx, jobs...)
		return s.enqueued(ids, err, names...)
	}
}

func claim(req queue.ClaimRequest) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string {
		jobs, err := s.q.Claim(ctx, req)
		return s.claimed(jobs, err)
	}
}

func exception(name string, tb queue.Traceback) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string {
		return s.err(s.q.Exception(ctx, s.literal([]string{name})[0], tb))
	}
}

func names(n ...string) []string { return n }

// Entrypoints of the script.
const (
	epA = "conf-a"
	epB = "conf-b"
	epC = "conf-c"
)

func scriptSteps() []scriptStep {
	var heartbeatBefore time.Time
	pyTraceback := "Traceback (most recent call last):\n  File \"w.py\", line 3, in run\n    raise ValueError('boom')\nValueError: boom\n"
	return []scriptStep{
		// Enqueue: bad input writes nothing.
		{"enqueue of no jobs", enqueue(nil), "err[ErrInvalidJob]"},
		{"enqueue with an empty entrypoint", enqueue(nil, queue.NewJob{}), "err[ErrInvalidJob]"},
		{"enqueue of a valid job then one with a priority beyond int4", enqueue(nil, queue.NewJob{Entrypoint: epA}, queue.NewJob{Entrypoint: epA, Priority: 1 << 40}), "err[ErrInvalidJob]"},
		{"enqueue with a negative delay", enqueue(nil, queue.NewJob{Entrypoint: epA, ExecuteAfter: -time.Second}), "err[ErrInvalidJob]"},
		{"enqueue with NUL in the dedupe key", enqueue(nil, queue.NewJob{Entrypoint: epA, DedupeKey: "k\x00"}), "err[ErrInvalidJob]"},
		{"enqueue with headers that do not encode", enqueue(nil, queue.NewJob{Entrypoint: epA, Headers: map[string]any{"c": make(chan int)}}), "err[ErrInvalidJob]"},
		{"claim after the refused enqueues", claim(queue.ClaimRequest{Entrypoints: []string{epA}, Limit: 10}), "ok []"},

		// Enqueue with every field.
		{"enqueue of four jobs", enqueue(names("a1", "a2", "a3", "b1"),
			queue.NewJob{Entrypoint: epA, Payload: []byte("p1"), Priority: 1, DedupeKey: "k1", Headers: map[string]any{"trace": "t-1", "n": 2}},
			queue.NewJob{Entrypoint: epA, Priority: 5, Payload: []byte{}},
			queue.NewJob{Entrypoint: epA, Priority: 5},
			queue.NewJob{Entrypoint: epB, ExecuteAfter: time.Hour + 1500*time.Microsecond}),
			"ok a1 a2 a3 b1"},
		{"enqueue of another entrypoint's job", enqueue(names("c0"), queue.NewJob{Entrypoint: epC, Priority: 100}), "ok c0"},
		{"inspect a queued job", inspect("a1"),
			`state=queued job={a1 ep=conf-a prio=1 status=queued attempts=0 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-} history=[queued]`},
		{"inspect an empty payload", inspect("a2"), `state=queued job={a2 ep=conf-a prio=5 status=queued attempts=0 key= payload=null headers=null qm=-} history=[queued]`},
		{"execute-after of a delayed job", func(s *script, _ context.Context) string {
			return s.times("b1", func(j queue.Job) string {
				if d := j.ExecuteAfter.Sub(j.Created); d != time.Hour+1500*time.Microsecond {
					return fmt.Sprintf("execute_after - created = %s", d)
				}
				return "ok"
			})
		}, "ok"},

		// Dedupe conflicts name the holder.
		{"enqueue of a held dedupe key", enqueue(nil, queue.NewJob{Entrypoint: epA, DedupeKey: "k1"}), "err[ErrDuplicate] dup{index=0 key=k1 holder=a1}"},
		{"batch enqueue with a held dedupe key", enqueue(nil, queue.NewJob{Entrypoint: epA, DedupeKey: "k9"}, queue.NewJob{Entrypoint: epA}, queue.NewJob{Entrypoint: epA, DedupeKey: "k1"}),
			"err[ErrDuplicate] dup{index=2 key=k1 holder=a1}"},
		{"batch enqueue repeating a key", enqueue(nil, queue.NewJob{Entrypoint: epA, DedupeKey: "k2"}, queue.NewJob{Entrypoint: epA, DedupeKey: "k2"}),
			"err[ErrDuplicate] dup{index=1 key=k2 holder=0}"},
		{"the refused batches wrote nothing", enqueue(names("k9"), queue.NewJob{Entrypoint: epC, DedupeKey: "k9"}), "ok k9"},

		// Claim.
		{"claim with limit 0", claim(queue.ClaimRequest{Entrypoints: []string{epA}}), "err[ErrInvalidJob]"},
		{"claim of no entrypoint", claim(queue.ClaimRequest{Limit: 1}), "err[ErrInvalidJob]"},
		{"claim of a delayed job", claim(queue.ClaimRequest{Entrypoints: []string{epB}, Limit: 10}), "ok []"},
		{"claim by priority, then id", claim(queue.ClaimRequest{Entrypoints: []string{epA, epB}, Limit: 2, QueueManagerID: qmID}),
			"ok [{a2 ep=conf-a prio=5 status=picked attempts=0 key= payload=null headers=null qm=abcd} {a3 ep=conf-a prio=5 status=picked attempts=0 key= payload=null headers=null qm=abcd}]"},
		{"inspect a picked job", inspect("a2"), `state=picked job={a2 ep=conf-a prio=5 status=picked attempts=0 key= payload=null headers=null qm=abcd} history=[queued picked]`},

		// Heartbeat.
		{"read the heartbeat", func(s *script, _ context.Context) string {
			return s.times("a2", func(j queue.Job) string { heartbeatBefore = j.Heartbeat; return "ok" })
		}, "ok"},
		{"heartbeat of a picked job", heartbeat("a2", "a3", "a2"), "ok"},
		{"the heartbeat moved", func(s *script, _ context.Context) string {
			return s.times("a2", func(j queue.Job) string {
				if j.Heartbeat.Before(heartbeatBefore) {
					return fmt.Sprintf("heartbeat went back from %v to %v", heartbeatBefore, j.Heartbeat)
				}
				return "ok"
			})
		}, "ok"},
		{"heartbeat logs nothing", inspect("a2"), `state=picked job={a2 ep=conf-a prio=5 status=picked attempts=0 key= payload=null headers=null qm=abcd} history=[queued picked]`},
		{"heartbeat of a queued job", heartbeat("a2", "a1"), "err[ErrNotPicked] notpicked{job=a1 state=queued}"},
		{"heartbeat of an unknown job", heartbeat("unknown"), "err[ErrUnknownJob ErrNotPicked] notpicked{job=unknown state=(none)}"},
		{"heartbeat of id 0", heartbeat("0"), "err[ErrInvalidID]"},
		{"heartbeat of no ids", heartbeat(), "err[ErrInvalidID]"},

		// Complete.
		{"complete", apply(sm.Complete, "a2"), "ok"},
		{"inspect a completed job", inspect("a2"), "state=successful job=none history=[queued picked successful]"},
		{"complete twice", apply(sm.Complete, "a2"), "err[ErrIllegalTransition] transition{job=a2 from=successful event=complete}"},
		{"complete of an unknown job", apply(sm.Complete, "unknown"), "err[ErrUnknownJob ErrIllegalTransition] transition{job=unknown from=(none) event=complete}"},
		{"complete of a queued job", apply(sm.Complete, "a1"), "err[ErrIllegalTransition] transition{job=a1 from=queued event=complete}"},
		{"complete of no ids", apply(sm.Complete), "err[ErrInvalidID]"},
		{"complete of id -1", apply(sm.Complete, "-1"), "err[ErrInvalidID]"},
		{"heartbeat of a completed job", heartbeat("a2"), "err[ErrNotPicked] notpicked{job=a2 state=successful}"},

		// Exception and its traceback.
		{"exception with a traceback that is not JSON", exception("a3", queue.Traceback{Raw: json.RawMessage(`{"bad"`)}), "err[ErrInvalidJob]"},
		{"exception with another job's traceback", exception("a3", queue.Traceback{JobID: unknownID, ExceptionMessage: "x"}), "err[ErrInvalidJob]"},
		{"exception of id 0", exception("0", queue.Traceback{}), "err[ErrInvalidID]"},
		{"exception", exception("a3", queue.Traceback{Timestamp: tbAt, ExceptionType: "ValueError", ExceptionMessage: "boom",
			Traceback: pyTraceback, AdditionalContext: map[string]any{"entrypoint": epA, "attempt": 1}}), "ok"},
		{"inspect an exception", inspect("a3"), `state=exception job=none history=[queued picked exception+tb] tb={job=a3 ts=2025-05-01T10:00:00.123456Z ` +
			`type=ValueError msg=boom traceback="Traceback (most recent call last):\n  File \"w.py\", line 3, in run\n    raise ValueError('boom')\nValueError: boom\n" ` +
			`context={"attempt":1,"entrypoint":"conf-a"} raw={"additional_context":{"attempt":1,"entrypoint":"conf-a"},"exception_message":"boom","exception_type":"ValueError",` +
			`"job_id":` + "{{a3}}" + `,"timestamp":"2025-05-01T10:00:00.123456Z","traceback":"Traceback (most recent call last):\n  File \"w.py\", line 3, in run\n    raise ValueError('boom')\nValueError: boom\n"}}`},
		{"exception of a queued job", exception("a1", queue.Traceback{ExceptionMessage: "x"}), "err[ErrIllegalTransition] transition{job=a1 from=queued event=error}"},
		{"exception of an unknown job", exception("unknown", queue.Traceback{}), "err[ErrUnknownJob ErrIllegalTransition] transition{job=unknown from=(none) event=error}"},

		// Retry, hold, requeue, and the dedupe key of a held job.
		{"claim of the last queued job", claim(queue.ClaimRequest{Entrypoints: []string{epA}, Limit: 5}),
			`ok [{a1 ep=conf-a prio=1 status=picked attempts=0 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-}]`},
		{"retry", apply(sm.Retry, "a1"), "ok"},
		{"inspect a retried job", inspect("a1"), `state=queued job={a1 ep=conf-a prio=1 status=queued attempts=1 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-} history=[queued picked queued]`},
		{"a retried job is ready at once", claim(queue.ClaimRequest{Entrypoints: []string{epA}, Limit: 5}),
			`ok [{a1 ep=conf-a prio=1 status=picked attempts=1 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-}]`},
		{"hold", apply(sm.Hold, "a1"), "ok"},
		{"inspect a held job", inspect("a1"), `state=failed job={a1 ep=conf-a prio=1 status=failed attempts=1 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-} history=[queued picked queued picked failed]`},
		{"a held job is not claimed", claim(queue.ClaimRequest{Entrypoints: []string{epA}, Limit: 5}), "ok []"},
		{"a held job holds no dedupe key", enqueue(names("a4"), queue.NewJob{Entrypoint: epA, DedupeKey: "k1"}), "ok a4"},
		{"requeue of a held job whose key was taken", apply(sm.Requeue, "a1"), "err[ErrDuplicate] dup{index=0 key=k1 holder=a4}"},
		{"the refused requeue changed nothing", inspect("a1"), `state=failed job={a1 ep=conf-a prio=1 status=failed attempts=1 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-} history=[queued picked queued picked failed]`},
		{"requeue of a finished job", apply(sm.Requeue, "a2"), "err[ErrIllegalTransition] transition{job=a2 from=successful event=requeue}"},
		{"delete of a queued job", apply(sm.Delete, "a4"), "ok"},
		{"requeue, the id repeated", apply(sm.Requeue, "a1", "a1"), "ok"},
		{"inspect a requeued job", inspect("a1"), `state=queued job={a1 ep=conf-a prio=1 status=queued attempts=0 key=k1 payload="p1" headers={"n":2,"trace":"t-1"} qm=-} history=[queued picked queued picked failed queued]`},

		// Cancel and delete; a batch is all or nothing.
		{"cancel of a queued and a finished job", apply(sm.Cancel, "c0", "a2"), "err[ErrIllegalTransition] transition{job=a2 from=successful event=cancel}"},
		{"the refused batch changed nothing", inspect("c0"), `state=queued job={c0 ep=conf-c prio=100 status=queued attempts=0 key= payload=null headers=null qm=-} history=[queued]`},
		{"cancel of a queued job", apply(sm.Cancel, "a1"), "ok"},
		{"inspect a canceled job", inspect("a1"), "state=canceled job=none history=[queued picked queued picked failed queued canceled]"},
		{"its dedupe key is free", enqueue(names("a5"), queue.NewJob{Entrypoint: epA, DedupeKey: "k1"}), "ok a5"},
		{"delete, the id repeated", apply(sm.Delete, "b1", "b1"), "ok"},
		{"inspect a deleted job", inspect("b1"), "state=deleted job=none history=[queued deleted]"},
		{"hold of a deleted job", apply(sm.Hold, "b1"), "err[ErrIllegalTransition] transition{job=b1 from=deleted event=hold}"},
		{"cancel of a picked job", func(s *script, ctx context.Context) string {
			if _, err := s.q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{epC}, Limit: 1}); err != nil {
				return s.err(err)
			}
			return s.err(s.q.Cancel(ctx, s.id("c0")))
		}, "ok"},
		{"delete of a picked job", func(s *script, ctx context.Context) string {
			if _, err := s.q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{epA}, Limit: 1}); err != nil {
				return s.err(err)
			}
			return s.err(s.q.Delete(ctx, s.id("a5")))
		}, "err[ErrIllegalTransition] transition{job=a5 from=picked event=delete}"},

		// Tracebacks written without a timestamp, or none at all.
		{"exception with no timestamp", exception("a5", queue.Traceback{ExceptionMessage: "late"}), "ok"},
		{"inspect it", inspect("a5"), `state=exception job=none history=[queued picked exception+tb] tb={job=a5 ts=now type= msg=late traceback="" context=null raw=` +
			`{"additional_context":null,"exception_message":"late","exception_type":"","job_id":{{a5}},"timestamp":"{{ts}}","traceback":""}}`},
		{"exception with a raw traceback", func(s *script, ctx context.Context) string {
			if _, err := s.q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{epC}, Limit: 1}); err != nil {
				return s.err(err)
			}
			return s.err(s.q.Exception(ctx, s.id("k9"), queue.Traceback{Raw: json.RawMessage(` {"error": "out of memory", "code": 137} `)}))
		}, "ok"},
		{"inspect a raw traceback", inspect("k9"), `state=exception job=none history=[queued picked exception+tb] tb={job=0 ts=zero type= msg= traceback="" context=null raw={"code":137,"error":"out of memory"}}`},

		// Two held jobs with one key, requeued together.
		{"enqueue, claim and hold a keyed job", holdKeyed("d1"), "ok"},
		{"enqueue, claim and hold another with the same key", holdKeyed("d2"), "ok"},
		{"requeue of both", apply(sm.Requeue, "d1", "d2"), "err[ErrDuplicate] dup{index=1 key=k3 holder=0}"},
		{"requeue of one", apply(sm.Requeue, "d2"), "ok"},

		{"inspect of an unknown job", inspect("unknown"), "err[ErrUnknownJob]"},
		{"inspect of id 0", func(s *script, ctx context.Context) string {
			_, err := s.q.Inspect(ctx, 0)
			return s.err(err)
		}, "err[ErrInvalidID]"},
	}
}

// holdKeyed enqueues a job named name with dedupe key k3, claims it and
// holds it.
func holdKeyed(name string) func(s *script, ctx context.Context) string {
	return func(s *script, ctx context.Context) string {
		ids, err := s.q.Enqueue(ctx, queue.NewJob{Entrypoint: "conf-d", DedupeKey: "k3"})
		if err != nil {
			return s.err(err)
		}
		s.bind(ids, name)
		if _, err := s.q.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"conf-d"}, Limit: 1}); err != nil {
			return s.err(err)
		}
		return s.err(s.q.Hold(ctx, ids[0]))
	}
}
