package queue_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

func TestValidate(t *testing.T) {
	bad := map[string]queue.NewJob{
		"empty entrypoint":        {},
		"NUL in the entrypoint":   {Entrypoint: "a\x00b"},
		"invalid UTF-8":           {Entrypoint: "\xff"},
		"NUL in the dedupe key":   {Entrypoint: "a", DedupeKey: "k\x00"},
		"priority beyond int4":    {Entrypoint: "a", Priority: math.MaxInt32 + 1},
		"priority below int4":     {Entrypoint: "a", Priority: math.MinInt32 - 1},
		"negative delay":          {Entrypoint: "a", ExecuteAfter: -time.Nanosecond},
		"headers that not encode": {Entrypoint: "a", Headers: map[string]any{"f": func() {}}},
	}
	for name, j := range bad {
		if err := j.Validate(); !errors.Is(err, queue.ErrInvalidJob) {
			t.Errorf("%s: Validate = %v, want ErrInvalidJob", name, err)
		}
	}
	ok := queue.NewJob{Entrypoint: "a", Priority: math.MinInt32, ExecuteAfter: time.Hour, DedupeKey: "日本", Headers: map[string]any{"a": 1}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
	if h, err := ok.HeadersJSON(); err != nil || string(h) != `{"a":1}` {
		t.Errorf("HeadersJSON = %s, %v", h, err)
	}
	if h, err := (queue.NewJob{}).HeadersJSON(); err != nil || h != nil {
		t.Errorf("nil headers: %s, %v", h, err)
	}
	for _, r := range []queue.ClaimRequest{
		{Limit: 1}, {Entrypoints: []string{""}, Limit: 1}, {Entrypoints: []string{"a\x00"}, Limit: 1},
		{Entrypoints: []string{"a"}}, {Entrypoints: []string{"a"}, Limit: -1}, {Entrypoints: []string{"a"}, Limit: queue.MaxClaimLimit + 1},
	} {
		if err := r.Validate(); !errors.Is(err, queue.ErrInvalidJob) {
			t.Errorf("ClaimRequest%+v.Validate = %v, want ErrInvalidJob", r, err)
		}
	}
	if err := (queue.ClaimRequest{Entrypoints: []string{"a"}, Limit: queue.MaxClaimLimit}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestCheckJobs(t *testing.T) {
	if err := queue.CheckJobs(nil); !errors.Is(err, queue.ErrInvalidJob) {
		t.Errorf("no jobs: %v", err)
	}
	err := queue.CheckJobs([]queue.NewJob{{Entrypoint: "a"}, {}})
	if !errors.Is(err, queue.ErrInvalidJob) || !strings.Contains(err.Error(), "job 1") {
		t.Errorf("bad second job: %v, want ErrInvalidJob naming job 1", err)
	}
	err = queue.CheckJobs([]queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}, {Entrypoint: "a"}, {Entrypoint: "b", DedupeKey: "k"}})
	var dup *queue.DuplicateError
	if !errors.As(err, &dup) || *dup != (queue.DuplicateError{Index: 2, Key: "k"}) || !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("repeated key: %v", err)
	}
	// An invalid job is reported before a repeated key.
	if err := queue.CheckJobs([]queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}, {Entrypoint: "a", DedupeKey: "k"}, {}}); !errors.Is(err, queue.ErrInvalidJob) {
		t.Errorf("invalid and repeated: %v", err)
	}
	if err := queue.CheckJobs([]queue.NewJob{{Entrypoint: "a", DedupeKey: "k"}, {Entrypoint: "a", DedupeKey: "l"}, {Entrypoint: "a"}, {Entrypoint: "a"}}); err != nil {
		t.Errorf("distinct keys: %v", err)
	}
}

func TestErrors(t *testing.T) {
	err := queue.UnknownJobError(statemachine.Complete, 7)
	var te *statemachine.TransitionError
	if !errors.Is(err, queue.ErrUnknownJob) || !errors.Is(err, statemachine.ErrIllegalTransition) || !errors.As(err, &te) ||
		te.ID != 7 || te.From != statemachine.None || te.Event != statemachine.Complete {
		t.Errorf("UnknownJobError = %v", err)
	}
	np := &queue.NotPickedError{ID: 3}
	if !errors.Is(np, queue.ErrNotPicked) || !errors.Is(np, queue.ErrUnknownJob) || !strings.Contains(np.Error(), "does not exist") {
		t.Errorf("unknown: %v", np)
	}
	np = &queue.NotPickedError{ID: 3, State: statemachine.Queued}
	if !errors.Is(np, queue.ErrNotPicked) || errors.Is(np, queue.ErrUnknownJob) || !strings.Contains(np.Error(), "is queued") {
		t.Errorf("queued: %v", np)
	}
	for _, d := range []*queue.DuplicateError{{Index: 1, Key: "k", ID: 9}, {Index: 0, Key: strings.Repeat("k", 100)}, {Index: -1}} {
		if !errors.Is(d, queue.ErrDuplicate) || errors.Is(d, queue.ErrInvalidJob) || len(d.Error()) > 200 {
			t.Errorf("DuplicateError %v", d)
		}
	}
	if msg := (&queue.DuplicateError{Index: 1, Key: "k", ID: 9}).Error(); !strings.Contains(msg, "held by job 9") {
		t.Errorf("message %q does not name the holder", msg)
	}
}

// pydantic's model_dump_json of a TracebackRecord, as PgQueuer stores it.
const pgqueuerRecord = `{"job_id":42,"timestamp":"2025-05-01T10:00:00.123456Z","exception_type":"ValueError",` +
	`"exception_message":"boom","traceback":"Traceback (most recent call last):\n  ...\nValueError: boom\n",` +
	`"additional_context":{"entrypoint":"resize","queue_manager_id":"6f1f7a52-5d2c-4c36-9c59-0d7c1a3f0b11"}}`

func TestParseTraceback(t *testing.T) {
	at := time.Date(2025, 5, 1, 10, 0, 0, 123456000, time.UTC)
	tb := queue.ParseTraceback([]byte(pgqueuerRecord))
	want := queue.Traceback{JobID: 42, Timestamp: at, ExceptionType: "ValueError", ExceptionMessage: "boom",
		Traceback:         "Traceback (most recent call last):\n  ...\nValueError: boom\n",
		AdditionalContext: map[string]any{"entrypoint": "resize", "queue_manager_id": "6f1f7a52-5d2c-4c36-9c59-0d7c1a3f0b11"},
		Raw:               json.RawMessage(pgqueuerRecord)}
	if !reflect.DeepEqual(*tb, want) {
		t.Errorf("ParseTraceback(PgQueuer's record) =\n%+v\nwant\n%+v", *tb, want)
	}
	for _, c := range []struct {
		name, raw string
		want      queue.Traceback
	}{
		{"jsonb spacing, null context", `{"job_id": 1, "traceback": "t", "timestamp": "2025-05-01T10:00:00+02:00", "exception_type": "E", "exception_message": "m", "additional_context": null}`,
			queue.Traceback{JobID: 1, Timestamp: at.Add(-2*time.Hour - 123456000), ExceptionType: "E", ExceptionMessage: "m", Traceback: "t"}},
		{"naive timestamp", `{"timestamp": "2025-05-01T10:00:00.123456"}`, queue.Traceback{Timestamp: at}},
		{"wrong types", `{"job_id": "x", "timestamp": 5, "exception_type": 1, "additional_context": []}`, queue.Traceback{}},
		{"unparsable timestamp", `{"timestamp": "yesterday", "exception_message": "m"}`, queue.Traceback{ExceptionMessage: "m"}},
		{"not an object", `["a"]`, queue.Traceback{}},
		{"a string", `"boom"`, queue.Traceback{}},
		{"another program's fields", `{"error": "x", "code": 1}`, queue.Traceback{}},
	} {
		got := queue.ParseTraceback([]byte(c.raw))
		c.want.Raw = json.RawMessage(c.raw)
		if got == nil || !got.Timestamp.Equal(c.want.Timestamp) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
			continue
		}
		got.Timestamp = c.want.Timestamp
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, *got, c.want)
		}
	}
	if queue.ParseTraceback(nil) != nil || queue.ParseTraceback([]byte{}) != nil {
		t.Error("empty traceback parsed")
	}
	raw := []byte(`{"a":1}`)
	tb = queue.ParseTraceback(raw)
	raw[2] = 'b'
	if string(tb.Raw) != `{"a":1}` {
		t.Error("Raw shares the caller's buffer")
	}
}

func TestEncodeTraceback(t *testing.T) {
	now := time.Date(2025, 5, 1, 10, 0, 0, 5000, time.FixedZone("CEST", 7200))
	raw, err := queue.Traceback{ExceptionType: "E", ExceptionMessage: "m"}.Encode(7, now)
	if err != nil {
		t.Fatal(err)
	}
	// All six fields of a TracebackRecord (pydantic requires them), the
	// time in UTC as pydantic prints it.
	want := `{"job_id":7,"timestamp":"2025-05-01T08:00:00.000005Z","exception_type":"E","exception_message":"m","traceback":"","additional_context":null}`
	if string(raw) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", raw, want)
	}
	tb := queue.ParseTraceback(raw)
	if tb.JobID != 7 || !tb.Timestamp.Equal(now) || tb.ExceptionType != "E" || tb.ExceptionMessage != "m" {
		t.Errorf("round trip: %+v", tb)
	}
	// Given fields are kept.
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _ = queue.Traceback{JobID: 7, Timestamp: at, AdditionalContext: map[string]any{"k": "v"}}.Encode(7, now)
	if tb := queue.ParseTraceback(raw); !tb.Timestamp.Equal(at) || tb.AdditionalContext["k"] != "v" {
		t.Errorf("given fields: %s", raw)
	}
	if raw, err := (queue.Traceback{}).Encode(7, now); raw != nil || err != nil {
		t.Errorf("zero traceback: %s, %v; want NULL", raw, err)
	}
	if raw, err := (queue.Traceback{Raw: json.RawMessage(" {\"a\": [1, 2]} ")}).Encode(7, now); err != nil || string(raw) != `{"a":[1,2]}` {
		t.Errorf("raw: %s, %v", raw, err)
	}
	for name, tb := range map[string]queue.Traceback{
		"raw not JSON":              {Raw: json.RawMessage(`{`)},
		"another job's":             {JobID: 8},
		"context that won't encode": {AdditionalContext: map[string]any{"c": make(chan int)}},
	} {
		if _, err := tb.Encode(7, now); !errors.Is(err, queue.ErrInvalidJob) {
			t.Errorf("%s: %v, want ErrInvalidJob", name, err)
		}
	}
}

func TestTracebackOf(t *testing.T) {
	if tb := queue.TracebackOf(nil); !tb.IsZero() {
		t.Errorf("TracebackOf(nil) = %+v", tb)
	}
	tb := queue.TracebackOf(errors.New("boom"))
	if tb.ExceptionType != "*errors.errorString" || tb.ExceptionMessage != "boom" || tb.Traceback != "boom" || tb.IsZero() {
		t.Errorf("TracebackOf = %+v", tb)
	}
}

func TestJobInfoTraceback(t *testing.T) {
	if (queue.JobInfo{}).Traceback() != nil {
		t.Error("traceback without history")
	}
	tb := &queue.Traceback{ExceptionMessage: "x"}
	info := queue.JobInfo{ID: 1, History: []queue.Transition{{State: statemachine.Picked}, {State: statemachine.Exception, Traceback: tb}}}
	if info.Traceback() != tb {
		t.Error("not the newest row's traceback")
	}
	info.History = append(info.History, queue.Transition{State: statemachine.Queued})
	if info.Traceback() != nil {
		t.Error("a traceback of an older row")
	}
}

func TestTracebackJSON(t *testing.T) {
	// Read back, a traceback marshals to what was stored.
	var tb queue.Traceback
	if err := json.Unmarshal([]byte(pgqueuerRecord), &tb); err != nil || tb.ExceptionType != "ValueError" {
		t.Fatalf("Unmarshal = %+v, %v", tb, err)
	}
	out, err := json.Marshal(map[string]any{"traceback": tb, "ptr": &tb})
	if err != nil || !strings.Contains(string(out), `"traceback":`+pgqueuerRecord) || !strings.Contains(string(out), `"ptr":`+pgqueuerRecord) {
		t.Fatalf("Marshal = %s, %v", out, err)
	}
	// Built in Go: the six fields.
	out, err = json.Marshal(queue.Traceback{JobID: 3, ExceptionMessage: "m", Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
	want := `{"job_id":3,"timestamp":"2025-01-02T03:04:05Z","exception_type":"","exception_message":"m","traceback":"","additional_context":null}`
	if err != nil || string(out) != want {
		t.Fatalf("Marshal = %s, %v; want %s", out, err, want)
	}
	if _, err := json.Marshal(queue.Traceback{Raw: json.RawMessage("{")}); err == nil {
		t.Fatal("Marshal of a bad Raw succeeded")
	}
	// Not a record: Raw only, no error.
	if err := json.Unmarshal([]byte(`[1]`), &tb); err != nil || string(tb.Raw) != "[1]" || tb.ExceptionType != "" {
		t.Fatalf("Unmarshal of an array = %+v, %v", tb, err)
	}
}
