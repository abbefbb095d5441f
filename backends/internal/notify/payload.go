// Package notify parses the JSON payloads PgQueuer sends on its NOTIFY
// channel. It is shared by every backend so they agree on what is a change
// hint, what is another event, and what is garbage.
package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kind classifies a payload by its "type" field.
type Kind uint8

// The event types PgQueuer sends on the channel. Anything else is Other.
const (
	Other        Kind = iota // a well-formed event of a type we do not act on
	TableChanged             // "table_changed_event": the queue table changed
	Cancellation             // "cancellation_event": workers should cancel ids
	HealthCheck              // "health_check_event": a listener probe
)

// Type names as they appear in the "type" field.
const (
	TypeTableChanged = "table_changed_event"
	TypeCancellation = "cancellation_event"
	TypeHealthCheck  = "health_check_event"
)

// MaxPayload is PostgreSQL's default NOTIFY payload limit: longer payloads
// cannot have been sent by the server, so they are rejected unparsed.
const MaxPayload = 8000

// ErrMalformed matches every parse failure.
var ErrMalformed = errors.New("jobwatch: malformed notification payload")

// Event is a parsed payload. Only the fields of its Kind are set.
type Event struct {
	Kind      Kind
	Type      string  // the raw "type" field
	Table     string  // TableChanged: the table that changed
	Operation string  // TableChanged: insert, update, delete or truncate
	IDs       []int64 // Cancellation: the jobs to cancel
	ProbeID   string  // HealthCheck: the probe's id
}

type wire struct {
	Type      *string         `json:"type"`
	Table     json.RawMessage `json:"table"`
	Operation json.RawMessage `json:"operation"`
	IDs       json.RawMessage `json:"ids"`
	ID        json.RawMessage `json:"id"`
}

// Parse decodes one payload. It never panics; any input that is not a JSON
// object with a string "type" (or whose known type carries fields of the
// wrong JSON type, or that is not valid UTF-8) returns an error matching ErrMalformed. Unknown types
// parse as Kind Other.
func Parse(payload string) (Event, error) {
	if len(payload) > MaxPayload {
		return Event{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(payload), MaxPayload)
	}
	// encoding/json silently replaces invalid UTF-8 inside strings with
	// U+FFFD; a UTF-8 server cannot send such bytes, so reject them.
	if !utf8.ValidString(payload) {
		return Event{}, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	var w wire
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.Type == nil {
		return Event{}, fmt.Errorf("%w: no string \"type\" field", ErrMalformed)
	}
	ev := Event{Type: *w.Type}
	var err error
	switch ev.Type {
	case TypeTableChanged:
		ev.Kind = TableChanged
		err = errors.Join(optField(w.Table, "table", &ev.Table), optField(w.Operation, "operation", &ev.Operation))
	case TypeCancellation:
		ev.Kind = Cancellation
		err = optField(w.IDs, "ids", &ev.IDs)
	case TypeHealthCheck:
		ev.Kind = HealthCheck
		err = optField(w.ID, "id", &ev.ProbeID)
	default:
		ev.Kind = Other
	}
	if err != nil {
		return Event{}, err
	}
	return ev, nil
}

// optField decodes an optional field; JSON null counts as absent.
func optField[T any](raw json.RawMessage, name string, dst *T) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: field %q: %v", ErrMalformed, name, err)
	}
	return nil
}
