// Package fake is an in-memory job queue for unit tests: a jobwatch.Driver
// and a queue.Queue (the producer and worker side: enqueue with payloads
// and dedupe keys, claim, heartbeat, complete, exception with a traceback,
// ..., inspect), with controls to inject the faults a real PostgreSQL
// listener suffers: lost, duplicated, delayed and garbled notifications,
// failing reads and listens, dropped connections and slow queries.
//
// Code written against queue.Queue runs unchanged on the fake and on
// backends/pgx or backends/pq: the three return the same results and the
// same errors for the same calls (the sentinels of package queue, such as
// queue.ErrUnknownJob, and its typed errors), which conformance.RunQueue
// checks. Package jobwatchtest pairs a fake with a Watcher whose timings
// suit tests.
//
// A Backend behaves like a PgQueuer-compatible database: every write
// (Enqueue, Claim, a transition, or a Tx) is one transaction, checked
// against the statemachine and the dedupe index before anything changes;
// a committed transaction that enqueued or ended a job, or held one,
// notifies every live subscription once, after the change is visible to
// FetchStatuses, exactly as the statement-level trigger does (which names
// no job, so by default a notification carries no ids) with the explicit
// notification of the PostgreSQL backends' Hold. Like that trigger, which
// is silent on UPDATE, a commit that only claims, retries or requeues
// notifies nobody: the change feed and the poll still see it. A failed or
// rolled-back write, and a heartbeat, change no state and notify nobody. Jobs are kept, with their
// history, for the Backend's life.
//
// For tests that only need ids, EnqueueN(ctx, n) enqueues n plain jobs and
// Apply(ctx, event, ids...) applies any event of the statemachine.
//
// The Backend keeps its timestamps with time.Now, and its delays with the
// time package's timers, so it also runs inside a testing/synctest bubble
// (create it there), where they follow the bubble's virtual clock.
//
// Everything in this package is safe for concurrent use unless a doc comment
// says otherwise, never panics on bad input, and leaves no goroutine running
// once the Backend is closed.
package fake
