// Package fake is an in-memory jobwatch.Driver for unit tests, with controls
// to inject the faults a real PostgreSQL listener suffers: lost, duplicated,
// delayed and garbled notifications, failing reads and listens, dropped
// connections and slow queries.
//
// A Backend behaves like a PgQueuer-compatible database as the design
// describes it: every write (Enqueue, Apply, or a Tx) is one transaction,
// checked against the statemachine before anything changes; a committed
// transaction that changed something notifies every live subscription once,
// after the change is visible to FetchStatuses, exactly as the
// statement-level trigger does (which names no job, so by default a
// notification carries no ids). A failed or rolled-back write changes
// nothing and notifies nobody.
//
// Everything in this package is safe for concurrent use unless a doc comment
// says otherwise, never panics on bad input, and leaves no goroutine running
// once the Backend is closed.
package fake
