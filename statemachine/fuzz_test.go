package statemachine_test

import (
	"errors"
	"slices"
	"testing"

	sm "github.com/jobwatch/jobwatch/statemachine"
)

// junkNames seeds the parser fuzzers with near misses and hostile input.
var junkNames = []string{
	"", "(none)", "Queued", " queued", "queued ", "queued\x00", "\x00", "\xff",
	"quеued", // Cyrillic е
	"State(1)", "Event(1)", "CLAIM", "claim\n", "pending", "held",
}

func FuzzParseState(f *testing.F) {
	for _, s := range validStates {
		f.Add(s.String())
	}
	for _, e := range validEvents {
		f.Add(e.String())
	}
	for _, s := range junkNames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s, err := sm.ParseState(name)
		if err != nil {
			if !errors.Is(err, sm.ErrUnknownState) {
				t.Fatalf("ParseState(%q) error %v does not match ErrUnknownState", name, err)
			}
			if s != sm.None {
				t.Fatalf("ParseState(%q) = %v with its error", name, s)
			}
			if len(err.Error()) > maxErrLen {
				t.Fatalf("ParseState error is %d bytes long", len(err.Error()))
			}
			return
		}
		if !s.Valid() {
			t.Fatalf("ParseState(%q) = invalid state %d", name, uint8(s))
		}
		if s.String() != name {
			t.Fatalf("ParseState(%q) = %v, which prints as %q", name, s, s.String())
		}
		if b, err := s.MarshalText(); err != nil || string(b) != name {
			t.Fatalf("MarshalText of ParseState(%q) = %q, %v", name, b, err)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	for _, e := range validEvents {
		f.Add(e.String())
	}
	for _, s := range validStates {
		f.Add(s.String())
	}
	for _, s := range junkNames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		e, err := sm.ParseEvent(name)
		if err != nil {
			if !errors.Is(err, sm.ErrUnknownEvent) {
				t.Fatalf("ParseEvent(%q) error %v does not match ErrUnknownEvent", name, err)
			}
			if e != 0 {
				t.Fatalf("ParseEvent(%q) = %v with its error", name, e)
			}
			if len(err.Error()) > maxErrLen {
				t.Fatalf("ParseEvent error is %d bytes long", len(err.Error()))
			}
			return
		}
		if !e.Valid() {
			t.Fatalf("ParseEvent(%q) = invalid event %d", name, uint8(e))
		}
		if e.String() != name {
			t.Fatalf("ParseEvent(%q) = %v, which prints as %q", name, e, e.String())
		}
	})
}

func FuzzTransition(f *testing.F) {
	for _, s := range allStates {
		for _, e := range allEvents {
			f.Add(uint8(s), uint8(e))
		}
	}
	f.Fuzz(func(t *testing.T, from, ev uint8) {
		s, e := sm.State(from), sm.Event(ev)
		to, err := sm.Transition(s, e)
		legal := sm.Legal(s, e)
		if (err == nil) != legal {
			t.Fatalf("Transition(%v, %v) error %v, but Legal = %v", s, e, err, legal)
		}
		want, inTable := legalTable[pair{s, e}]
		if legal != inTable {
			t.Fatalf("Legal(%v, %v) = %v, design table says %v", s, e, legal, inTable)
		}
		if s.Terminal() && legal {
			t.Fatalf("terminal state %v leaves on %v to %v", s, e, to)
		}
		if slices.Contains(sm.Sources(e), s) != legal {
			t.Fatalf("Sources(%v) = %v disagrees with Legal(%v, %v) = %v", e, sm.Sources(e), s, e, legal)
		}
		if legal {
			if to != want || !to.Valid() {
				t.Fatalf("Transition(%v, %v) = %v, want %v", s, e, to, want)
			}
			return
		}
		if to != sm.None {
			t.Fatalf("Transition(%v, %v) = %v with its error", s, e, to)
		}
		if !errors.Is(err, sm.ErrIllegalTransition) {
			t.Fatalf("error %v does not match ErrIllegalTransition", err)
		}
		if errors.Is(err, sm.ErrUnknownEvent) == e.Valid() {
			t.Fatalf("error %v: errors.Is ErrUnknownEvent disagrees with Event.Valid = %v", err, e.Valid())
		}
		var te *sm.TransitionError
		if !errors.As(err, &te) || te.From != s || te.Event != e {
			t.Fatalf("error %v is not a TransitionError{From: %v, Event: %v}", err, s, e)
		}
		_ = err.Error() // must not panic for any value
	})
}
