package pgx

import "context"

// Test hooks, compiled into the package's tests only.

// SetBeforeProbe makes subscriptions opened afterwards call f with Next's
// ctx just before each health probe is sent; an error from f counts as a
// probe that could not be sent.
func (b *Backend) SetBeforeProbe(f func(context.Context) error) { b.beforeProbe = f }
