// Package statemachine is the job lifecycle of a PgQueuer-compatible queue:
// its seven states, the events that move a job between them, and the table of
// legal transitions.
//
// Everything here is a pure function of its arguments and safe for
// concurrent use. Backends consult Transition (or Sources) before writing,
// so an illegal change is refused before anything reaches the database.
package statemachine

import (
	"errors"
	"fmt"
)

// State is a job's status. The zero value, None, is the state of a job that
// does not exist yet; it is the source of Enqueue and is never stored.
type State uint8

// The states, named as PgQueuer's pgqueuer_status enum names them.
const (
	None       State = iota // not a stored state: the job does not exist yet
	Queued                  // waiting to be claimed
	Picked                  // claimed by a worker
	Successful              // terminal: finished without error
	Exception               // terminal: the worker raised an error
	Canceled                // terminal: canceled while queued or picked
	Deleted                 // terminal: removed before it ran
	Failed                  // held: parked until requeued or deleted
)

// States lists every stored state (None excluded) in declaration order.
func States() []State {
	return []State{Queued, Picked, Successful, Exception, Canceled, Deleted, Failed}
}

var stateNames = [...]string{
	None:       "(none)",
	Queued:     "queued",
	Picked:     "picked",
	Successful: "successful",
	Exception:  "exception",
	Canceled:   "canceled",
	Deleted:    "deleted",
	Failed:     "failed",
}

// String returns the enum label PgQueuer stores ("queued", "picked", ...).
// None prints as "(none)"; an out-of-range value prints as "State(n)".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Valid reports whether s is one of the seven stored states.
func (s State) Valid() bool { return s >= Queued && s <= Failed }

// Terminal reports whether s is final: successful, exception, canceled or
// deleted. A terminal job never changes again. Failed (held) is not
// terminal: a held job can still be requeued or deleted.
func (s State) Terminal() bool {
	switch s {
	case Successful, Exception, Canceled, Deleted:
		return true
	}
	return false
}

// MarshalText encodes s as its enum label. It fails for None and unknown
// values, so an invalid state never reaches the database or a JSON document.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownState, uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes an enum label; see ParseState.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseState returns the state whose enum label is name. Matching is exact
// (PostgreSQL enum labels are case-sensitive); anything else, including the
// empty string and "(none)", returns an error matching ErrUnknownState.
func ParseState(name string) (State, error) {
	for _, s := range States() {
		if stateNames[s] == name {
			return s, nil
		}
	}
	return None, fmt.Errorf("%w: %q", ErrUnknownState, truncate(name))
}

// Event is something that happens to a job and may change its state.
type Event uint8

// The events of the lifecycle. The zero value is not an event.
const (
	Enqueue  Event = iota + 1 // (new) -> queued
	Claim                     // queued -> picked
	Complete                  // picked -> successful
	Error                     // picked -> exception
	Cancel                    // queued or picked -> canceled
	Hold                      // picked -> failed
	Retry                     // picked -> queued
	Requeue                   // failed -> queued
	Delete                    // queued or failed -> deleted
)

// Events lists every event in declaration order.
func Events() []Event {
	return []Event{Enqueue, Claim, Complete, Error, Cancel, Hold, Retry, Requeue, Delete}
}

var eventNames = [...]string{
	Enqueue:  "enqueue",
	Claim:    "claim",
	Complete: "complete",
	Error:    "error",
	Cancel:   "cancel",
	Hold:     "hold",
	Retry:    "retry",
	Requeue:  "requeue",
	Delete:   "delete",
}

// String returns the event's lower-case name; an invalid value prints as
// "Event(n)".
func (e Event) String() string {
	if e.Valid() {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", uint8(e))
}

// Valid reports whether e is one of the nine events.
func (e Event) Valid() bool { return e >= Enqueue && e <= Delete }

// ParseEvent returns the event named name (exact, lower case). Anything else
// returns an error matching ErrUnknownEvent.
func ParseEvent(name string) (Event, error) {
	for _, e := range Events() {
		if eventNames[e] == name {
			return e, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownEvent, truncate(name))
}

type edge struct {
	from State
	ev   Event
}

// table is the job lifecycle (README.md, "The job lifecycle"; package
// doc): the completion-tracking transitions plus the ones PgQueuer adds
// (cancel while queued, retry, requeue, delete while held).
var table = map[edge]State{
	{None, Enqueue}:    Queued,
	{Queued, Claim}:    Picked,
	{Queued, Delete}:   Deleted,
	{Picked, Complete}: Successful,
	{Picked, Error}:    Exception,
	{Picked, Cancel}:   Canceled,
	{Picked, Hold}:     Failed,
	{Queued, Cancel}:   Canceled,
	{Picked, Retry}:    Queued,
	{Failed, Requeue}:  Queued,
	{Failed, Delete}:   Deleted,
}

// Transition returns the state a job in state from reaches on event ev. Any
// pair not in the table returns a *TransitionError matching
// ErrIllegalTransition; an invalid event matches ErrUnknownEvent as well.
func Transition(from State, ev Event) (State, error) {
	if to, ok := table[edge{from, ev}]; ok {
		return to, nil
	}
	return None, &TransitionError{From: from, Event: ev}
}

// Legal reports whether event ev may happen to a job in state from.
func Legal(from State, ev Event) bool {
	_, ok := table[edge{from, ev}]
	return ok
}

// Sources returns the states from which ev is legal, in declaration order.
// Backends use it to guard an UPDATE or DELETE by status, so a transition
// made illegal by a concurrent change affects no row. Enqueue returns
// [None]; an invalid event returns nil.
func Sources(ev Event) []State {
	var out []State
	for _, s := range append([]State{None}, States()...) {
		if Legal(s, ev) {
			out = append(out, s)
		}
	}
	return out
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrIllegalTransition: the event may not happen in the job's state.
	ErrIllegalTransition = errors.New("statemachine: illegal transition")
	// ErrUnknownState: a name or value that is not one of the seven states.
	ErrUnknownState = errors.New("statemachine: unknown state")
	// ErrUnknownEvent: a name or value that is not one of the events.
	ErrUnknownEvent = errors.New("statemachine: unknown event")
)

// TransitionError is an illegal (state, event) pair. It matches
// ErrIllegalTransition, and ErrUnknownEvent too when Event is invalid.
// ID is the job concerned, when the caller knows it (0 otherwise).
type TransitionError struct {
	ID    int64
	From  State
	Event Event
}

func (e *TransitionError) Error() string {
	msg := fmt.Sprintf("statemachine: illegal transition: %s from %s", e.Event, e.From)
	if e.From == None && e.Event != Enqueue {
		msg = fmt.Sprintf("statemachine: illegal transition: %s of a job that does not exist", e.Event)
	}
	if e.ID != 0 {
		msg += fmt.Sprintf(" (job %d)", e.ID)
	}
	return msg
}

// Is makes errors.Is match the sentinels this error stands for.
func (e *TransitionError) Is(target error) bool {
	return target == ErrIllegalTransition || (target == ErrUnknownEvent && !e.Event.Valid())
}

// truncate keeps error messages short when fed hostile input.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
