package fake

import (
	"errors"
	"slices"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// store is the committed data: every job's record and the dedupe index. It
// is guarded by Backend.mu.
type store struct {
	jobs map[jobwatch.JobID]*record
	keys map[string]jobwatch.JobID // dedupe key -> the queued or picked job holding it
}

func newStore() store {
	return store{jobs: make(map[jobwatch.JobID]*record), keys: make(map[string]jobwatch.JobID)}
}

// stage is a set of uncommitted changes over the store: the states and
// dedupe keys they lead to, for the checks of later changes, and the
// operations that commit replays on the records. It is not safe for
// concurrent use: its owner holds Backend.mu while touching it, since base
// is the Backend's live store.
type stage struct {
	base   *store
	states map[jobwatch.JobID]statemachine.State // staged states
	keys   map[string]jobwatch.JobID             // dedupe keys taken by staged changes
	fresh  map[jobwatch.JobID]*record            // records created here, not in base yet
	ops    []op                                  // changes to records, in order
	order  []jobwatch.JobID                      // ids whose state changed, in the order first changed
	now    time.Time
}

// op is one staged change of one record: a transition, or a heartbeat (ev
// 0).
type op struct {
	id jobwatch.JobID
	tb *queue.Traceback
	qm *[16]byte // a claim's queue manager id; nil for none
	ev statemachine.Event
	to statemachine.State
}

func newStage(base *store) *stage {
	return &stage{base: base, states: make(map[jobwatch.JobID]statemachine.State), keys: make(map[string]jobwatch.JobID),
		fresh: make(map[jobwatch.JobID]*record), now: now()}
}

// record returns the record of id, base's or one created in this stage
// (its fixed fields are right; its state may be behind: see state).
func (s *stage) record(id jobwatch.JobID) (*record, bool) {
	if r, ok := s.fresh[id]; ok {
		return r, true
	}
	r, ok := s.base.jobs[id]
	return r, ok
}

// state returns the state of id as this stage sees it.
func (s *stage) state(id jobwatch.JobID) (statemachine.State, bool) {
	if st, ok := s.states[id]; ok {
		return st, true
	}
	r, ok := s.record(id)
	if !ok {
		return statemachine.None, false
	}
	return r.job.Status, true
}

func active(st statemachine.State) bool {
	return st == statemachine.Queued || st == statemachine.Picked
}

// setState stages id's new state, and the dedupe key it takes.
func (s *stage) setState(id jobwatch.JobID, to statemachine.State) {
	if _, ok := s.states[id]; !ok {
		s.order = append(s.order, id)
	}
	s.states[id] = to
	if r, _ := s.record(id); active(to) && r.job.DedupeKey != "" {
		s.keys[r.job.DedupeKey] = id
	}
}

// holder returns the queued or picked job that holds key, other than
// except, as this stage sees it.
func (s *stage) holder(key string, except jobwatch.JobID) (jobwatch.JobID, bool) {
	for _, id := range []jobwatch.JobID{s.keys[key], s.base.keys[key]} {
		if id == 0 || id == except {
			continue
		}
		if st, _ := s.state(id); active(st) {
			return id, true
		}
	}
	return 0, false
}

// enqueue stages jobs as new records with ids, all or nothing: a job whose
// dedupe key is held returns the *queue.DuplicateError naming the holder
// and stages nothing. jobs passed queue.CheckJobs.
func (s *stage) enqueue(ids []jobwatch.JobID, jobs []queue.NewJob) error {
	for i, j := range jobs {
		if j.DedupeKey == "" {
			continue
		}
		if h, held := s.holder(j.DedupeKey, 0); held {
			return &queue.DuplicateError{Index: i, Key: j.DedupeKey, ID: h}
		}
	}
	s.grow(len(jobs))
	if len(s.fresh) == 0 && len(jobs) > 8 {
		s.fresh = make(map[jobwatch.JobID]*record, len(jobs))
	}
	for i, j := range jobs {
		s.fresh[ids[i]] = newRecord(ids[i], j, s.now)
		s.setState(ids[i], statemachine.Queued)
	}
	return nil
}

// apply stages ev for each id (a repeated id counts once), with tb logged
// by statemachine.Error, atomically: on error nothing is staged. The checks
// come in the order PostgreSQL makes them: the dedupe index first (a
// requeue of a job whose key another job took returns a
// *queue.DuplicateError), then legality (an unknown id returns an error
// matching queue.ErrUnknownJob, an illegal transition the
// *statemachine.TransitionError with ID set, both for the first such id).
func (s *stage) apply(ev statemachine.Event, ids []jobwatch.JobID, tb *queue.Traceback) error {
	var steps []step
	var illegal error
	seen := make(map[jobwatch.JobID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		cur, ok := s.state(id)
		if !ok {
			illegal = firstErr(illegal, queue.UnknownJobError(ev, id))
			continue
		}
		to, err := statemachine.Transition(cur, ev)
		if err != nil {
			var te *statemachine.TransitionError
			if errors.As(err, &te) {
				te.ID = int64(id)
			}
			illegal = firstErr(illegal, err)
			continue
		}
		steps = append(steps, step{id, to})
	}
	if err := s.checkKeys(ev, ids, steps); err != nil {
		return err
	}
	if illegal != nil {
		return illegal
	}
	s.grow(len(steps))
	for _, st := range steps {
		s.transition(op{id: st.id, ev: ev, to: st.to, tb: tb})
	}
	return nil
}

// grow makes room for n more changed jobs (a batch of 100,000 is common in
// benchmarks, and growing as it goes costs more than the batch itself).
func (s *stage) grow(n int) {
	s.ops = slices.Grow(s.ops, n)
	s.order = slices.Grow(s.order, n)
	if len(s.states) == 0 && n > 8 {
		s.states = make(map[jobwatch.JobID]statemachine.State, n)
	}
}

// transition stages o, a legal transition.
func (s *stage) transition(o op) {
	s.ops = append(s.ops, o)
	s.setState(o.id, o.to)
}

// heartbeat stages a heartbeat of id: no state change.
func (s *stage) heartbeat(id jobwatch.JobID) {
	s.ops = append(s.ops, op{id: id})
}

// checkKeys refuses a requeue that would make two jobs hold one dedupe key,
// as the dedupe index refuses it: the first job of ids (in input order)
// whose key another queued or picked job holds, or another job of the same
// requeue takes too (ID 0).
func (s *stage) checkKeys(ev statemachine.Event, ids []jobwatch.JobID, steps []step) error {
	if ev != statemachine.Requeue {
		return nil // no other event makes a job start holding its key
	}
	requeued := make(map[jobwatch.JobID]bool, len(steps))
	for _, st := range steps {
		requeued[st.id] = true
	}
	keyOf := func(id jobwatch.JobID) string {
		if !requeued[id] {
			return ""
		}
		r, _ := s.record(id)
		return r.job.DedupeKey
	}
	for i, id := range ids {
		if key := keyOf(id); key != "" {
			if h, held := s.holder(key, id); held {
				return &queue.DuplicateError{Index: i, Key: key, ID: h}
			}
		}
	}
	taken := map[string]jobwatch.JobID{}
	for i, id := range ids {
		key := keyOf(id)
		if key == "" {
			continue
		}
		if first, ok := taken[key]; ok && first != id {
			return &queue.DuplicateError{Index: i, Key: key}
		}
		taken[key] = id
	}
	return nil
}

// step is one job's transition in apply.
type step struct {
	id jobwatch.JobID
	to statemachine.State
}

func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// empty reports whether s stages nothing.
func (s *stage) empty() bool { return len(s.fresh) == 0 && len(s.ops) == 0 }

// announced says whether committing s notifies, as the PostgreSQL backends
// do: their trigger, like PgQueuer's, announces an insert or a delete of a
// queue row (an enqueue, or a job that ends) but not an UPDATE (a claim,
// retry, requeue or heartbeat). A hold is an UPDATE too, but the backends
// announce it themselves, because it can end a wait.
func (s *stage) announced() bool {
	if len(s.fresh) > 0 {
		return true
	}
	for _, o := range s.ops {
		switch o.ev {
		case 0, statemachine.Claim, statemachine.Retry, statemachine.Requeue:
		default:
			return true
		}
	}
	return false
}

// commit writes the staged changes into the store, in order, and keeps the
// dedupe index up to date.
func (s *stage) commit() {
	for id, r := range s.fresh {
		s.base.jobs[id] = r
		if r.job.DedupeKey != "" {
			s.base.keys[r.job.DedupeKey] = id
		}
	}
	for _, o := range s.ops {
		r := s.base.jobs[o.id]
		if o.ev == 0 {
			r.job.Heartbeat = s.now
			continue
		}
		r.transition(o.ev, o.to, s.now, o.tb)
		if o.qm != nil {
			r.job.QueueManagerID = *o.qm
		}
		if key := r.job.DedupeKey; key != "" {
			switch {
			case r.active():
				s.base.keys[key] = o.id
			case s.base.keys[key] == o.id:
				delete(s.base.keys, key)
			}
		}
	}
}
