package statemachine_test

import (
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch/statemachine"
)

func ExampleTransition() {
	to, err := statemachine.Transition(statemachine.Queued, statemachine.Claim)
	fmt.Println(to, err)

	// A finished job never changes again.
	_, err = statemachine.Transition(statemachine.Successful, statemachine.Cancel)
	fmt.Println(errors.Is(err, statemachine.ErrIllegalTransition))
	fmt.Println(err)

	var te *statemachine.TransitionError
	if errors.As(err, &te) {
		fmt.Println(te.From, te.Event)
	}
	// Output:
	// picked <nil>
	// true
	// statemachine: illegal transition: cancel from successful
	// successful cancel
}

func ExampleParseState() {
	s, err := statemachine.ParseState("failed")
	fmt.Println(s, err, s.Terminal())

	// Enum labels are case-sensitive, as in PostgreSQL.
	_, err = statemachine.ParseState("Queued")
	fmt.Println(errors.Is(err, statemachine.ErrUnknownState))
	fmt.Println(err)
	// Output:
	// failed <nil> false
	// true
	// statemachine: unknown state: "Queued"
}

func ExampleSources() {
	fmt.Println(statemachine.Sources(statemachine.Delete))
	fmt.Println(statemachine.Sources(statemachine.Cancel))
	// Output:
	// [queued failed]
	// [queued picked]
}
