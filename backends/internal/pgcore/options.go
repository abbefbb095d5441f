package pgcore

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Options are what the backends' Option functions set (each backend's
// unexported options type is an alias of it).
type Options struct {
	Prefix, Schema string
	Health         time.Duration
	Logger         *slog.Logger
}

// ApplyOptions applies opts over defaults and validates the result, as both
// backends' New do: a nil option or a negative health-check interval
// is an error matching errInvalid; a prefix or schema that cannot name the
// objects is one matching pgschema.ErrInvalidIdentifier. A nil Logger
// becomes one that discards.
func ApplyOptions[O ~func(*Options)](opts []O, defaults Options, errInvalid error) (Options, pgschema.Names, error) {
	o := defaults
	for _, opt := range opts {
		if opt == nil {
			return Options{}, pgschema.Names{}, fmt.Errorf("%w: nil option", errInvalid)
		}
		opt(&o)
	}
	if o.Health < 0 {
		return Options{}, pgschema.Names{}, fmt.Errorf("%w: negative health-check interval %v", errInvalid, o.Health)
	}
	names, err := pgschema.NewNames(o.Prefix, o.Schema)
	if err != nil {
		return Options{}, pgschema.Names{}, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, names, nil
}

// Subscriptions is the set of a backend's open subscriptions. The zero
// value is empty and ready to use; it is safe for concurrent use.
type Subscriptions[S interface {
	comparable
	PID() uint32
}] struct {
	mu  sync.Mutex
	set map[S]struct{}
}

// Add registers s.
func (r *Subscriptions[S]) Add(s S) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[S]struct{}{}
	}
	r.set[s] = struct{}{}
}

// Remove unregisters s.
func (r *Subscriptions[S]) Remove(s S) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.set, s)
}

// Len returns how many subscriptions are registered.
func (r *Subscriptions[S]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.set)
}

// PIDs returns the server process ids of the registered subscriptions,
// leaving out those whose pid is unknown (0).
func (r *Subscriptions[S]) PIDs() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint32, 0, len(r.set))
	for s := range r.set {
		if pid := s.PID(); pid != 0 {
			out = append(out, pid)
		}
	}
	return out
}
