package notify_test

import (
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

// Payloads as PgQueuer sends them (Python's json.dumps spacing).
const (
	pgqTableChanged = `{"channel": "ch_pgqueuer", "operation": "update", "sent_at": "2024-01-01T00:00:00.000000+00:00", "table": "pgqueuer", "type": "table_changed_event"}`
	pgqCancellation = `{"channel": "ch_pgqueuer", "ids": [1, 2], "sent_at": "2024-01-01T00:00:00.000000+00:00", "type": "cancellation_event"}`
	pgqHealthCheck  = `{"channel": "ch_pgqueuer", "id": "5f0c3c0e-8b7a-4c1e-9a51-0d2b6f1e7a42", "sent_at": "2024-01-01T00:00:00.000000+00:00", "type": "health_check_event"}`
	pgqRPS          = `{"channel": "ch_pgqueuer", "entrypoint_count": {"fetch": 3}, "sent_at": "2024-01-01T00:00:00.000000+00:00", "type": "requests_per_second_event"}`
)

// padTo returns a valid table_changed_event payload of exactly n bytes,
// padded with a "padding" field.
func padTo(t testing.TB, n int) string {
	t.Helper()
	const head = `{"type": "table_changed_event", "table": "pgqueuer", "operation": "insert", "padding": "`
	const tail = `"}`
	if n < len(head)+len(tail) {
		t.Fatalf("padTo(%d): too short", n)
	}
	p := head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	if len(p) != n {
		t.Fatalf("padTo(%d) built %d bytes", n, len(p))
	}
	return p
}

// randomBytes is deterministic junk.
func randomBytes(seed int64, n int) string {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, n)
	r.Read(b)
	return string(b)
}

func TestParse(t *testing.T) {
	tableChanged := func(table, op string) notify.Event {
		return notify.Event{Kind: notify.TableChanged, Type: notify.TypeTableChanged, Table: table, Operation: op}
	}
	tests := []struct {
		name    string
		payload string
		want    notify.Event
		wantErr bool
	}{
		// PgQueuer's real payloads.
		{"pgqueuer table_changed_event", pgqTableChanged, tableChanged("pgqueuer", "update"), false},
		{"pgqueuer cancellation_event", pgqCancellation,
			notify.Event{Kind: notify.Cancellation, Type: notify.TypeCancellation, IDs: []int64{1, 2}}, false},
		{"pgqueuer health_check_event", pgqHealthCheck,
			notify.Event{Kind: notify.HealthCheck, Type: notify.TypeHealthCheck, ProbeID: "5f0c3c0e-8b7a-4c1e-9a51-0d2b6f1e7a42"}, false},
		{"pgqueuer requests_per_second_event", pgqRPS,
			notify.Event{Kind: notify.Other, Type: "requests_per_second_event"}, false},

		// Other well-formed variants.
		{"compact table_changed", `{"type":"table_changed_event","table":"app_pgqueuer","operation":"truncate"}`, tableChanged("app_pgqueuer", "truncate"), false},
		{"table_changed without table", `{"type":"table_changed_event"}`, tableChanged("", ""), false},
		{"table_changed null fields", `{"type":"table_changed_event","table":null,"operation":null}`, tableChanged("", ""), false},
		{"surrounding whitespace", " \n\t" + pgqTableChanged + "\r\n ", tableChanged("pgqueuer", "update"), false},
		{"unicode table name", `{"type":"table_changed_event","table":"\u00e9t\u00e9","operation":"delete"}`, tableChanged("été", "delete"), false},
		{"cancellation empty ids", `{"type":"cancellation_event","ids":[]}`,
			notify.Event{Kind: notify.Cancellation, Type: notify.TypeCancellation, IDs: []int64{}}, false},
		{"cancellation without ids", `{"type":"cancellation_event"}`,
			notify.Event{Kind: notify.Cancellation, Type: notify.TypeCancellation}, false},
		{"cancellation max int64", `{"type":"cancellation_event","ids":[9223372036854775807]}`,
			notify.Event{Kind: notify.Cancellation, Type: notify.TypeCancellation, IDs: []int64{9223372036854775807}}, false},
		{"health check without id", `{"type":"health_check_event"}`,
			notify.Event{Kind: notify.HealthCheck, Type: notify.TypeHealthCheck}, false},
		{"unknown type", `{"type":"something_else","x":1}`, notify.Event{Kind: notify.Other, Type: "something_else"}, false},
		{"empty type", `{"type":""}`, notify.Event{Kind: notify.Other}, false},
		{"unknown type ignores mistyped known fields", `{"type":"other","table":5,"ids":"x","id":[]}`,
			notify.Event{Kind: notify.Other, Type: "other"}, false},
		{"type differs in case", `{"type":"Table_Changed_Event","table":"pgqueuer"}`,
			notify.Event{Kind: notify.Other, Type: "Table_Changed_Event"}, false},
		{"near 8000 bytes", padTo(t, 7990), tableChanged("pgqueuer", "insert"), false},
		{"largest payload PostgreSQL sends", padTo(t, notify.MaxPayload-1), tableChanged("pgqueuer", "insert"), false},

		// Garbage.
		{"empty", "", notify.Event{}, true},
		{"whitespace", "  \n", notify.Event{}, true},
		{"random bytes", randomBytes(1, 64), notify.Event{}, true},
		{"random bytes long", randomBytes(2, 4096), notify.Event{}, true},
		{"binary junk", "\x00\x01\xfe\xff\x7fgarbage", notify.Event{}, true},
		{"null", `null`, notify.Event{}, true},
		{"array", `[]`, notify.Event{}, true},
		{"string", `"x"`, notify.Event{}, true},
		{"number", `42`, notify.Event{}, true},
		{"empty object", `{}`, notify.Event{}, true},
		{"type number", `{"type": 5}`, notify.Event{}, true},
		{"type null", `{"type": null}`, notify.Event{}, true},
		{"type object", `{"type": {}}`, notify.Event{}, true},
		{"table number", `{"type":"table_changed_event","table":5}`, notify.Event{}, true},
		{"operation array", `{"type":"table_changed_event","table":"pgqueuer","operation":[]}`, notify.Event{}, true},
		{"ids string", `{"type":"cancellation_event","ids":"x"}`, notify.Event{}, true},
		{"ids float", `{"type":"cancellation_event","ids":[1.5]}`, notify.Event{}, true},
		{"ids overflow", `{"type":"cancellation_event","ids":[9223372036854775808]}`, notify.Event{}, true},
		{"health id number", `{"type":"health_check_event","id":5}`, notify.Event{}, true},
		{"truncated", pgqTableChanged[:len(pgqTableChanged)-1], notify.Event{}, true},
		{"trailing data", pgqTableChanged + ` {}`, notify.Event{}, true},
		{"invalid UTF-8 outside strings", "\xff" + pgqTableChanged, notify.Event{}, true},
		{"invalid UTF-8 in a value", "{\"type\":\"table_changed_event\",\"table\":\"pg\xffqueuer\"}", notify.Event{}, true},
		{"invalid UTF-8 in the type", "{\"type\":\"table_changed_event\xc3\"}", notify.Event{}, true},
		{"invalid UTF-8 in an unknown field", "{\"type\":\"table_changed_event\",\"x\":\"\xed\xa0\x80\"}", notify.Event{}, true},
		{"over 8000 bytes", padTo(t, notify.MaxPayload+1), notify.Event{}, true},
		{"far over 8000 bytes", padTo(t, 1<<20), notify.Event{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notify.Parse(tt.payload)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%.60q) = %+v, want an error", tt.payload, got)
				}
				if !errors.Is(err, notify.ErrMalformed) {
					t.Fatalf("Parse(%.60q) error %v does not match ErrMalformed", tt.payload, err)
				}
				if len(err.Error()) > 300 {
					t.Errorf("error message is %d bytes long", len(err.Error()))
				}
			} else if err != nil {
				t.Fatalf("Parse(%.60q) error %v", tt.payload, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%.60q) = %+v, want %+v", tt.payload, got, tt.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	if notify.MaxPayload != 8000 {
		t.Fatalf("MaxPayload = %d, want PostgreSQL's 8000", notify.MaxPayload)
	}
	// The size check comes before parsing: an oversized payload is rejected
	// even when it is otherwise perfect JSON.
	_, err := notify.Parse(padTo(t, notify.MaxPayload+1))
	if !errors.Is(err, notify.ErrMalformed) {
		t.Fatalf("oversized payload: error %v", err)
	}
}
