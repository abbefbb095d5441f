package notify_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jobwatch/jobwatch/backends/internal/notify"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		pgqTableChanged, pgqCancellation, pgqHealthCheck, pgqRPS,
		"", "null", "[]", `"x"`, "{}", `{"type": 5}`, `{"type": null}`,
		`{"type":"table_changed_event","table":5}`,
		`{"type":"cancellation_event","ids":"x"}`,
		`{"type":"cancellation_event","ids":[1,null,3]}`,
		`{"type":"health_check_event","id":"x"}`,
		`{"TYPE":"table_changed_event"}`,
		`{"type":"a","type":"table_changed_event"}`,
		"{\"type\":\"table_changed_event\",\"table\":\"\xff\"}",
		"\x00\x01\xfe\xff",
		strings.Repeat("[", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		ev, err := notify.Parse(payload)
		if err != nil {
			if !errors.Is(err, notify.ErrMalformed) {
				t.Fatalf("Parse(%q) error %v does not match ErrMalformed", payload, err)
			}
			if ev.Kind != notify.Other || ev.Type != "" || ev.Table != "" || ev.Operation != "" || ev.IDs != nil || ev.ProbeID != "" {
				t.Fatalf("Parse(%q) returned %+v along with its error", payload, ev)
			}
			return
		}
		// Success: the payload was a sendable, well-formed JSON object.
		if len(payload) > notify.MaxPayload {
			t.Fatalf("accepted a %d-byte payload", len(payload))
		}
		if !utf8.ValidString(payload) {
			t.Fatalf("accepted invalid UTF-8: %q", payload)
		}
		if !json.Valid([]byte(payload)) || !strings.HasPrefix(strings.TrimLeft(payload, " \t\r\n"), "{") {
			t.Fatalf("accepted something that is not a JSON object: %q", payload)
		}
		// Kind agrees with Type, and only the fields of that Kind are set.
		var want notify.Kind
		switch ev.Type {
		case notify.TypeTableChanged:
			want = notify.TableChanged
		case notify.TypeCancellation:
			want = notify.Cancellation
		case notify.TypeHealthCheck:
			want = notify.HealthCheck
		default:
			want = notify.Other
		}
		if ev.Kind != want {
			t.Fatalf("Parse(%q): Kind %d for Type %q, want %d", payload, ev.Kind, ev.Type, want)
		}
		if ev.Kind != notify.TableChanged && (ev.Table != "" || ev.Operation != "") {
			t.Fatalf("Parse(%q): table fields set on Kind %d", payload, ev.Kind)
		}
		if ev.Kind != notify.Cancellation && ev.IDs != nil {
			t.Fatalf("Parse(%q): IDs set on Kind %d", payload, ev.Kind)
		}
		if ev.Kind != notify.HealthCheck && ev.ProbeID != "" {
			t.Fatalf("Parse(%q): ProbeID set on Kind %d", payload, ev.Kind)
		}
		// Deterministic.
		again, err := notify.Parse(payload)
		if err != nil || again.Kind != ev.Kind || again.Type != ev.Type || again.Table != ev.Table ||
			again.Operation != ev.Operation || again.ProbeID != ev.ProbeID || len(again.IDs) != len(ev.IDs) {
			t.Fatalf("Parse(%q) not deterministic: %+v then %+v, %v", payload, ev, again, err)
		}
	})
}
