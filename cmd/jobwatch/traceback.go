package main

import (
	"encoding/json"
	"time"

	jwqueue "github.com/jobwatch/jobwatch/queue"
)

// jsonTraceback is an exception job's traceback in --json output: the
// fields of PgQueuer's TracebackRecord as jobwatch parsed them (a field the
// worker did not write is zero), and raw, the JSON exactly as it was
// stored.
type jsonTraceback struct {
	JobID             int64           `json:"job_id"`
	Timestamp         time.Time       `json:"timestamp,omitzero"`
	ExceptionType     string          `json:"exception_type"`
	ExceptionMessage  string          `json:"exception_message"`
	Traceback         string          `json:"traceback"`
	AdditionalContext map[string]any  `json:"additional_context"`
	Raw               json.RawMessage `json:"raw"`
}

func newJSONTraceback(tb *jwqueue.Traceback) *jsonTraceback {
	if tb == nil {
		return nil
	}
	raw := tb.Raw
	if !json.Valid(raw) {
		raw = nil // encoded as null rather than failing the line
	}
	return &jsonTraceback{
		JobID:             int64(tb.JobID),
		Timestamp:         tb.Timestamp,
		ExceptionType:     tb.ExceptionType,
		ExceptionMessage:  tb.ExceptionMessage,
		Traceback:         tb.Traceback,
		AdditionalContext: tb.AdditionalContext,
		Raw:               raw,
	}
}
