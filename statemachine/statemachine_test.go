package statemachine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	sm "github.com/jobwatch/jobwatch/statemachine"
)

// pair is one (state, event) combination.
type pair struct {
	from sm.State
	ev   sm.Event
}

// legalTable is the lifecycle diagram of README.md ("The job lifecycle"),
// written out by hand so the test does not trust the package's own map.
var legalTable = map[pair]sm.State{
	{sm.None, sm.Enqueue}:    sm.Queued,
	{sm.Queued, sm.Claim}:    sm.Picked,
	{sm.Queued, sm.Delete}:   sm.Deleted,
	{sm.Picked, sm.Complete}: sm.Successful,
	{sm.Picked, sm.Error}:    sm.Exception,
	{sm.Picked, sm.Cancel}:   sm.Canceled,
	{sm.Picked, sm.Hold}:     sm.Failed,
	{sm.Queued, sm.Cancel}:   sm.Canceled,
	{sm.Picked, sm.Retry}:    sm.Queued,
	{sm.Failed, sm.Requeue}:  sm.Queued,
	{sm.Failed, sm.Delete}:   sm.Deleted,
}

// Every state value the tests iterate over: None, the seven stored states,
// and out-of-range values.
var (
	validStates = []sm.State{sm.Queued, sm.Picked, sm.Successful, sm.Exception, sm.Canceled, sm.Deleted, sm.Failed}
	validEvents = []sm.Event{sm.Enqueue, sm.Claim, sm.Complete, sm.Error, sm.Cancel, sm.Hold, sm.Retry, sm.Requeue, sm.Delete}
	allStates   = append([]sm.State{sm.None}, append(append([]sm.State(nil), validStates...), sm.State(8), sm.State(99), sm.State(255))...)
	allEvents   = append([]sm.Event{sm.Event(0)}, append(append([]sm.Event(nil), validEvents...), sm.Event(10), sm.Event(200), sm.Event(255))...)
)

var stateNames = map[sm.State]string{
	sm.None:       "(none)",
	sm.Queued:     "queued",
	sm.Picked:     "picked",
	sm.Successful: "successful",
	sm.Exception:  "exception",
	sm.Canceled:   "canceled",
	sm.Deleted:    "deleted",
	sm.Failed:     "failed",
	sm.State(8):   "State(8)",
	sm.State(99):  "State(99)",
	sm.State(255): "State(255)",
}

var eventNames = map[sm.Event]string{
	sm.Event(0):   "Event(0)",
	sm.Enqueue:    "enqueue",
	sm.Claim:      "claim",
	sm.Complete:   "complete",
	sm.Error:      "error",
	sm.Cancel:     "cancel",
	sm.Hold:       "hold",
	sm.Retry:      "retry",
	sm.Requeue:    "requeue",
	sm.Delete:     "delete",
	sm.Event(10):  "Event(10)",
	sm.Event(200): "Event(200)",
	sm.Event(255): "Event(255)",
}

func TestLegalTableSize(t *testing.T) {
	// Guard against a typo silently shrinking the hand-written table.
	if got := len(legalTable); got != 11 {
		t.Fatalf("legalTable has %d entries, the lifecycle diagram has 11", got)
	}
}

func TestTransitionExhaustive(t *testing.T) {
	n := 0
	for _, from := range allStates {
		for _, ev := range allEvents {
			n++
			want, legal := legalTable[pair{from, ev}]
			t.Run(stateNames[from]+"/"+eventNames[ev], func(t *testing.T) {
				checkTransition(t, from, ev, want, legal)
			})
		}
	}
	if want := 11 * 13; n != want {
		t.Fatalf("checked %d pairs, want %d", n, want)
	}
}

// checkTransition asserts the full contract of Transition and Legal for one
// pair against the expected result.
func checkTransition(t *testing.T, from sm.State, ev sm.Event, want sm.State, legal bool) {
	t.Helper()
	got, err := sm.Transition(from, ev)
	if l := sm.Legal(from, ev); l != legal {
		t.Errorf("Legal(%v, %v) = %v, want %v", from, ev, l, legal)
	}
	if legal {
		if err != nil {
			t.Fatalf("Transition(%v, %v) error %v, want %v", from, ev, err, want)
		}
		if got != want {
			t.Fatalf("Transition(%v, %v) = %v, want %v", from, ev, got, want)
		}
		return
	}
	if err == nil {
		t.Fatalf("Transition(%v, %v) = %v, nil; want an error", from, ev, got)
	}
	if got != sm.None {
		t.Errorf("Transition(%v, %v) returned state %v with its error, want None", from, ev, got)
	}
	if !errors.Is(err, sm.ErrIllegalTransition) {
		t.Errorf("error %v does not match ErrIllegalTransition", err)
	}
	if got, want := errors.Is(err, sm.ErrUnknownEvent), !ev.Valid(); got != want {
		t.Errorf("errors.Is(%v, ErrUnknownEvent) = %v, want %v", err, got, want)
	}
	if errors.Is(err, sm.ErrUnknownState) {
		t.Errorf("error %v matches ErrUnknownState", err)
	}
	var te *sm.TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("error %T %v is not a *TransitionError", err, err)
	}
	if te.From != from || te.Event != ev || te.ID != 0 {
		t.Errorf("TransitionError = %+v, want From=%v Event=%v ID=0", *te, from, ev)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "statemachine: illegal transition: ") {
		t.Errorf("error message %q lacks the package prefix", msg)
	}
}

func TestTerminalStatesGoNowhere(t *testing.T) {
	for _, from := range allStates {
		if !from.Terminal() {
			continue
		}
		for _, ev := range allEvents {
			if to, err := sm.Transition(from, ev); err == nil {
				t.Errorf("terminal %v --%v--> %v allowed", from, ev, to)
			}
		}
	}
}

func TestTerminal(t *testing.T) {
	want := map[sm.State]bool{
		sm.None:       false,
		sm.Queued:     false,
		sm.Picked:     false,
		sm.Successful: true,
		sm.Exception:  true,
		sm.Canceled:   true,
		sm.Deleted:    true,
		sm.Failed:     false,
		sm.State(8):   false,
		sm.State(99):  false,
		sm.State(255): false,
	}
	for _, s := range allStates {
		if got := s.Terminal(); got != want[s] {
			t.Errorf("%v.Terminal() = %v, want %v", s, got, want[s])
		}
	}
}

func TestValid(t *testing.T) {
	for _, s := range allStates {
		want := false
		for _, v := range validStates {
			want = want || s == v
		}
		if got := s.Valid(); got != want {
			t.Errorf("State(%d).Valid() = %v, want %v", uint8(s), got, want)
		}
	}
	for i := 0; i < 256; i++ {
		e := sm.Event(i)
		want := i >= 1 && i <= 9
		if got := e.Valid(); got != want {
			t.Errorf("Event(%d).Valid() = %v, want %v", i, got, want)
		}
		s := sm.State(i)
		want = i >= 1 && i <= 7
		if got := s.Valid(); got != want {
			t.Errorf("State(%d).Valid() = %v, want %v", i, got, want)
		}
	}
}

func TestString(t *testing.T) {
	for _, s := range allStates {
		if got, want := s.String(), stateNames[s]; got != want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	for _, e := range allEvents {
		if got, want := e.String(), eventNames[e]; got != want {
			t.Errorf("Event(%d).String() = %q, want %q", uint8(e), got, want)
		}
	}
}

func TestStatesAndEventsLists(t *testing.T) {
	if got := sm.States(); !reflect.DeepEqual(got, validStates) {
		t.Errorf("States() = %v, want %v", got, validStates)
	}
	if got := sm.Events(); !reflect.DeepEqual(got, validEvents) {
		t.Errorf("Events() = %v, want %v", got, validEvents)
	}
	// The returned slices are fresh copies: mutating one must not leak.
	s := sm.States()
	s[0] = sm.Failed
	if sm.States()[0] != sm.Queued {
		t.Error("States() returns a shared slice")
	}
	e := sm.Events()
	e[0] = sm.Delete
	if sm.Events()[0] != sm.Enqueue {
		t.Error("Events() returns a shared slice")
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, s := range validStates {
		got, err := sm.ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %v, nil", s.String(), got, err, s)
		}
	}
	for _, e := range validEvents {
		got, err := sm.ParseEvent(e.String())
		if err != nil || got != e {
			t.Errorf("ParseEvent(%q) = %v, %v; want %v, nil", e.String(), got, err, e)
		}
	}
}

// badNames are rejected by both parsers.
var badNames = []string{
	"",
	"(none)",
	"Queued",
	"QUEUED",
	" queued",
	"queued ",
	"queued\x00",
	"\x00",
	"Enqueue",
	" claim",
	"claim\n",
	"State(1)",
	"Event(1)",
	"State(99)",
	"Event(0)",
	"quéued",
	"\xff\xfe",
	"held",
	"pending",
	"1",
	"0",
	strings.Repeat("x", 100),
	strings.Repeat("queued", 10000),
	strings.Repeat("\xff", 1<<16),
	strings.Repeat("\x00", 1<<16),
	strings.Repeat("€", 1<<14),
}

// maxErrLen bounds an error message for hostile input: the name is cut to 64
// bytes and quoted, so each byte costs at most 4 characters ("\xff").
const maxErrLen = 64*4 + 80

func TestParseStateRejects(t *testing.T) {
	// Event names are not state names, and vice versa.
	names := append([]string(nil), badNames...)
	for _, e := range validEvents {
		names = append(names, e.String())
	}
	for _, name := range names {
		got, err := sm.ParseState(name)
		checkParseErr(t, "ParseState", name, err, sm.ErrUnknownState, sm.ErrUnknownEvent)
		if got != sm.None {
			t.Errorf("ParseState(%.20q) = %v with its error, want None", name, got)
		}
	}
}

func TestParseEventRejects(t *testing.T) {
	names := append([]string(nil), badNames...)
	for _, s := range validStates {
		names = append(names, s.String())
	}
	for _, name := range names {
		got, err := sm.ParseEvent(name)
		checkParseErr(t, "ParseEvent", name, err, sm.ErrUnknownEvent, sm.ErrUnknownState)
		if got != 0 {
			t.Errorf("ParseEvent(%.20q) = %v with its error, want 0", name, got)
		}
	}
}

func checkParseErr(t *testing.T, fn, name string, err, want, notWant error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s(%.20q) succeeded, want an error", fn, name)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s(%.20q) error %v does not match %v", fn, name, err, want)
	}
	if errors.Is(err, notWant) || errors.Is(err, sm.ErrIllegalTransition) {
		t.Errorf("%s(%.20q) error %v matches the wrong sentinel", fn, name, err)
	}
	msg := err.Error()
	if len(msg) > maxErrLen {
		t.Errorf("%s(%d-byte input) error is %d bytes long: %.100q...", fn, len(name), len(msg), msg)
	}
	if !utf8.ValidString(msg) {
		t.Errorf("%s(%.20q) error message is not valid UTF-8: %q", fn, name, msg)
	}
	if strings.ContainsAny(msg, "\x00\n") {
		t.Errorf("%s(%.20q) error message contains raw control bytes: %q", fn, name, msg)
	}
}

type doc struct {
	S sm.State `json:"s"`
}

func TestJSONRoundTrip(t *testing.T) {
	for _, s := range validStates {
		b, err := json.Marshal(doc{S: s})
		if err != nil {
			t.Fatalf("Marshal(%v): %v", s, err)
		}
		if want := `{"s":"` + stateNames[s] + `"}`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", s, b, want)
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if d.S != s {
			t.Errorf("round trip of %v gave %v", s, d.S)
		}
	}
}

func TestMarshalTextRejectsInvalid(t *testing.T) {
	for _, s := range []sm.State{sm.None, sm.State(8), sm.State(99), sm.State(255)} {
		b, err := s.MarshalText()
		if err == nil || b != nil {
			t.Errorf("State(%d).MarshalText() = %q, %v; want nil, error", uint8(s), b, err)
		}
		if !errors.Is(err, sm.ErrUnknownState) {
			t.Errorf("State(%d).MarshalText() error %v does not match ErrUnknownState", uint8(s), err)
		}
		if _, err := json.Marshal(doc{S: s}); err == nil {
			t.Errorf("json.Marshal of State(%d) succeeded", uint8(s))
		} else if !errors.Is(err, sm.ErrUnknownState) {
			t.Errorf("json.Marshal of State(%d) error %v does not match ErrUnknownState", uint8(s), err)
		}
	}
}

func TestUnmarshalTextRejects(t *testing.T) {
	for _, in := range []string{`{"s":""}`, `{"s":"(none)"}`, `{"s":"Queued"}`, `{"s":" queued"}`, `{"s":"queued\u0000"}`, `{"s":"claim"}`} {
		d := doc{S: sm.Picked}
		err := json.Unmarshal([]byte(in), &d)
		if !errors.Is(err, sm.ErrUnknownState) {
			t.Errorf("Unmarshal(%s) error %v, want ErrUnknownState", in, err)
		}
		if d.S != sm.Picked {
			t.Errorf("Unmarshal(%s) changed the value to %v on error", in, d.S)
		}
	}
	// Not a string at all: rejected by encoding/json before UnmarshalText.
	var d doc
	if err := json.Unmarshal([]byte(`{"s":1}`), &d); err == nil {
		t.Errorf(`Unmarshal({"s":1}) succeeded with %v`, d.S)
	}
	// Direct call, and a failure leaves the receiver untouched.
	s := sm.Failed
	if err := s.UnmarshalText([]byte("deleted")); err != nil || s != sm.Deleted {
		t.Errorf("UnmarshalText(deleted) = %v, state %v", err, s)
	}
	if err := s.UnmarshalText([]byte("nope")); !errors.Is(err, sm.ErrUnknownState) || s != sm.Deleted {
		t.Errorf("UnmarshalText(nope) = %v, state %v", err, s)
	}
}

func TestSources(t *testing.T) {
	// Derive the expected sources from the hand-written table, in
	// declaration order (None first).
	order := append([]sm.State{sm.None}, validStates...)
	for _, ev := range allEvents {
		var want []sm.State
		for _, s := range order {
			if _, ok := legalTable[pair{s, ev}]; ok {
				want = append(want, s)
			}
		}
		got := sm.Sources(ev)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Sources(%v) = %v, want %v", ev, got, want)
		}
		if ev.Valid() && len(got) == 0 {
			t.Errorf("Sources(%v) is empty for a valid event", ev)
		}
	}
	// Spot checks spelled out, independent of the loop above.
	if got, want := sm.Sources(sm.Enqueue), []sm.State{sm.None}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sources(enqueue) = %v, want %v", got, want)
	}
	if got, want := sm.Sources(sm.Delete), []sm.State{sm.Queued, sm.Failed}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sources(delete) = %v, want %v", got, want)
	}
	if got, want := sm.Sources(sm.Cancel), []sm.State{sm.Queued, sm.Picked}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sources(cancel) = %v, want %v", got, want)
	}
	if got := sm.Sources(sm.Event(0)); got != nil {
		t.Errorf("Sources(Event(0)) = %v, want nil", got)
	}
}

func TestTransitionErrorMessage(t *testing.T) {
	tests := []struct {
		err  sm.TransitionError
		want string
	}{
		{sm.TransitionError{From: sm.Successful, Event: sm.Cancel},
			"statemachine: illegal transition: cancel from successful"},
		{sm.TransitionError{ID: 42, From: sm.Queued, Event: sm.Complete},
			"statemachine: illegal transition: complete from queued (job 42)"},
		{sm.TransitionError{ID: -1, From: sm.Failed, Event: sm.Claim},
			"statemachine: illegal transition: claim from failed (job -1)"},
		{sm.TransitionError{From: sm.None, Event: sm.Claim},
			"statemachine: illegal transition: claim of a job that does not exist"},
		{sm.TransitionError{ID: 7, From: sm.None, Event: sm.Delete},
			"statemachine: illegal transition: delete of a job that does not exist (job 7)"},
		{sm.TransitionError{From: sm.Queued, Event: sm.Event(200)},
			"statemachine: illegal transition: Event(200) from queued"},
		{sm.TransitionError{From: sm.State(99), Event: sm.Claim},
			"statemachine: illegal transition: claim from State(99)"},
		{sm.TransitionError{From: sm.Queued, Event: sm.Enqueue},
			"statemachine: illegal transition: enqueue from queued"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
	// Transition's own error carries no ID.
	_, err := sm.Transition(sm.None, sm.Complete)
	if got, want := err.Error(), "statemachine: illegal transition: complete of a job that does not exist"; got != want {
		t.Errorf("Transition(None, complete) error %q, want %q", got, want)
	}
}

func TestTransitionErrorIs(t *testing.T) {
	valid := &sm.TransitionError{ID: 1, From: sm.Queued, Event: sm.Complete}
	if !errors.Is(valid, sm.ErrIllegalTransition) || errors.Is(valid, sm.ErrUnknownEvent) || errors.Is(valid, sm.ErrUnknownState) {
		t.Errorf("valid-event TransitionError matches the wrong sentinels")
	}
	invalid := &sm.TransitionError{From: sm.Queued, Event: sm.Event(0)}
	if !errors.Is(invalid, sm.ErrIllegalTransition) || !errors.Is(invalid, sm.ErrUnknownEvent) {
		t.Errorf("invalid-event TransitionError does not match both sentinels")
	}
	if errors.Is(valid, errors.New("statemachine: illegal transition")) {
		t.Errorf("TransitionError matches an unrelated error with the same text")
	}
	// Wrapped by a caller, it still matches and unwraps.
	wrapped := errors.Join(errors.New("context"), valid)
	var te *sm.TransitionError
	if !errors.Is(wrapped, sm.ErrIllegalTransition) || !errors.As(wrapped, &te) || te.ID != 1 {
		t.Errorf("wrapped TransitionError lost its identity: %v", wrapped)
	}
}
