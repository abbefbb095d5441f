package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
)

// Traceback is why a job failed, in the shape of PgQueuer's TracebackRecord
// (pgqueuer.models), which PgQueuer's workers store as JSON in the log's
// traceback column when a job raises (and when it is retried or held).
//
// Read back (JobInfo), Raw is always the stored JSON, verbatim, and the
// other fields are what of it parses: a field that is missing or of another
// type is left zero, so a traceback written by any program can be read.
// Written (Queue.Exception), see Encode.
type Traceback struct {
	JobID            jobwatch.JobID // job_id
	Timestamp        time.Time      // timestamp: when the exception was recorded
	ExceptionType    string         // exception_type: the exception's class name
	ExceptionMessage string         // exception_message: str(exception)
	Traceback        string         // traceback: the formatted stack
	// AdditionalContext is additional_context: anything the worker added
	// (PgQueuer puts the entrypoint and queue_manager_id there).
	AdditionalContext map[string]any
	// Raw is the stored JSON. When set on a Traceback being written, it is
	// stored as is and the other fields are ignored.
	Raw json.RawMessage
}

// record is TracebackRecord's JSON: all six fields, as pydantic requires
// them (additional_context may be null).
type record struct {
	JobID             int64          `json:"job_id"`
	Timestamp         string         `json:"timestamp"`
	ExceptionType     string         `json:"exception_type"`
	ExceptionMessage  string         `json:"exception_message"`
	Traceback         string         `json:"traceback"`
	AdditionalContext map[string]any `json:"additional_context"`
}

// timestampLayout is how pydantic prints an aware UTC datetime.
const timestampLayout = "2006-01-02T15:04:05.999999Z07:00"

// IsZero reports whether tb holds nothing: no field set and no Raw. A zero
// traceback is stored as NULL.
func (tb Traceback) IsZero() bool {
	return tb.Raw == nil && tb.JobID == 0 && tb.Timestamp.IsZero() && tb.ExceptionType == "" &&
		tb.ExceptionMessage == "" && tb.Traceback == "" && tb.AdditionalContext == nil
}

// Encode returns the JSON that Exception stores for job id, which PgQueuer
// reads as a TracebackRecord: nil (NULL) for a zero Traceback; Raw,
// compacted, when set (it must be valid JSON); otherwise the six fields,
// with JobID set to id when zero and Timestamp to now when zero. A Raw that is not
// JSON, a JobID naming another job, or an AdditionalContext that does not
// encode returns an error matching ErrInvalidJob.
func (tb Traceback) Encode(id jobwatch.JobID, now time.Time) (json.RawMessage, error) {
	switch {
	case tb.Raw != nil:
		if !json.Valid(tb.Raw) {
			return nil, fmt.Errorf("%w: traceback: Raw is not valid JSON", ErrInvalidJob)
		}
		var c bytes.Buffer
		_ = json.Compact(&c, tb.Raw) // valid, so it compacts
		return c.Bytes(), nil
	case tb.IsZero():
		return nil, nil
	case tb.JobID != 0 && tb.JobID != id:
		return nil, fmt.Errorf("%w: traceback of job %d given for job %d", ErrInvalidJob, int64(tb.JobID), int64(id))
	}
	if tb.Timestamp.IsZero() {
		tb.Timestamp = now
	}
	tb.JobID = id
	b, err := tb.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: traceback: %v", ErrInvalidJob, err)
	}
	return b, nil
}

// MarshalJSON encodes tb as PgQueuer's TracebackRecord JSON: Raw as is when
// set (so a traceback read back marshals to what was stored), else the six
// fields as they are (see Encode, which also fills them in). It fails for a
// Raw that is not valid JSON and an AdditionalContext that does not encode.
func (tb Traceback) MarshalJSON() ([]byte, error) {
	if tb.Raw != nil {
		if !json.Valid(tb.Raw) {
			return nil, fmt.Errorf("%w: traceback: Raw is not valid JSON", ErrInvalidJob)
		}
		return bytes.Clone(tb.Raw), nil
	}
	return json.Marshal(record{
		JobID:             int64(tb.JobID),
		Timestamp:         tb.Timestamp.UTC().Format(timestampLayout),
		ExceptionType:     tb.ExceptionType,
		ExceptionMessage:  tb.ExceptionMessage,
		Traceback:         tb.Traceback,
		AdditionalContext: tb.AdditionalContext,
	})
}

// UnmarshalJSON reads a TracebackRecord as ParseTraceback does: it never
// fails on valid JSON.
func (tb *Traceback) UnmarshalJSON(b []byte) error {
	if p := ParseTraceback(b); p != nil {
		*tb = *p
	}
	return nil
}

// ParseTraceback reads a stored traceback: Raw is a copy of raw, and every
// TracebackRecord field that parses is set (see Traceback). It never fails;
// empty raw returns nil.
func ParseTraceback(raw []byte) *Traceback {
	if len(raw) == 0 {
		return nil
	}
	tb := &Traceback{Raw: bytes.Clone(raw)}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return tb // not an object: Raw only
	}
	var id int64
	if json.Unmarshal(fields["job_id"], &id) == nil {
		tb.JobID = jobwatch.JobID(id)
	}
	var ts string
	if json.Unmarshal(fields["timestamp"], &ts) == nil {
		tb.Timestamp = parseTimestamp(ts)
	}
	_ = json.Unmarshal(fields["exception_type"], &tb.ExceptionType)
	_ = json.Unmarshal(fields["exception_message"], &tb.ExceptionMessage)
	_ = json.Unmarshal(fields["traceback"], &tb.Traceback)
	_ = json.Unmarshal(fields["additional_context"], &tb.AdditionalContext)
	return tb
}

// parseTimestamp reads an ISO 8601 time as Python prints it: with an offset
// (an aware datetime) or without one (naive, taken as UTC). Anything else
// is the zero time.
func parseTimestamp(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// TracebackOf describes err for Exception: ExceptionType is err's Go type
// (as %T prints it), ExceptionMessage is err.Error(), and Traceback is err
// formatted with %+v (which errors carrying a stack print it with). JobID
// and Timestamp are left for Exception to fill in.
func TracebackOf(err error) Traceback {
	if err == nil {
		return Traceback{}
	}
	return Traceback{
		ExceptionType:    fmt.Sprintf("%T", err),
		ExceptionMessage: err.Error(),
		Traceback:        fmt.Sprintf("%+v", err),
	}
}
