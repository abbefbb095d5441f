package fake

import (
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// stage is a set of uncommitted job states layered over the committed map.
// It is not safe for concurrent use: its owner holds Backend.mu while
// touching it, since base is the Backend's live map.
type stage struct {
	base    map[jobwatch.JobID]statemachine.State
	changed map[jobwatch.JobID]statemachine.State
	order   []jobwatch.JobID // changed ids, in the order first changed
}

func newStage(base map[jobwatch.JobID]statemachine.State) *stage {
	return &stage{base: base, changed: make(map[jobwatch.JobID]statemachine.State)}
}

// get returns the state of id as this stage sees it.
func (s *stage) get(id jobwatch.JobID) (statemachine.State, bool) {
	if st, ok := s.changed[id]; ok {
		return st, true
	}
	st, ok := s.base[id]
	return st, ok
}

func (s *stage) set(id jobwatch.JobID, st statemachine.State) {
	if _, ok := s.changed[id]; !ok {
		s.order = append(s.order, id)
	}
	s.changed[id] = st
}

// enqueue stages fresh ids as queued.
func (s *stage) enqueue(ids []jobwatch.JobID) {
	for _, id := range ids {
		s.set(id, statemachine.Queued)
	}
}

// apply stages ev for each id in order, atomically: on error nothing is
// staged. An unknown id returns an error matching ErrUnknownJob; an illegal
// transition returns the *statemachine.TransitionError with ID set.
func (s *stage) apply(ev statemachine.Event, ids []jobwatch.JobID) error {
	local := make(map[jobwatch.JobID]statemachine.State, len(ids))
	for _, id := range ids {
		cur, ok := local[id]
		if !ok {
			cur, ok = s.get(id)
		}
		if !ok {
			return fmt.Errorf("fake: %s job %d: %w", ev, id, ErrUnknownJob)
		}
		to, err := statemachine.Transition(cur, ev)
		if err != nil {
			var te *statemachine.TransitionError
			if errors.As(err, &te) {
				te.ID = int64(id)
			}
			return err
		}
		local[id] = to
	}
	for _, id := range ids {
		s.set(id, local[id])
	}
	return nil
}

// commit writes the staged states into base.
func (s *stage) commit() {
	for id, st := range s.changed {
		s.base[id] = st
	}
}
