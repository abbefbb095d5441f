// Package queue is the producer and worker side of a PgQueuer-compatible
// job queue: one interface, Queue, for enqueueing jobs, claiming and
// finishing them, and reading back what happened to one, implemented alike
// by backends/pgx, backends/pq and backends/fake.
//
// Code written against Queue is unit-tested on the in-memory fake and runs
// unchanged on PostgreSQL: every implementation returns the same results and
// the same errors for the same calls (the sentinels below, matched with
// errors.Is, and the typed errors DuplicateError, NotPickedError and
// statemachine.TransitionError, matched with errors.As). The conformance
// package's RunQueue checks that an implementation does.
//
// Waiting for a job to end is the jobwatch.Watcher's work; Queue.Inspect
// then tells how it ended:
//
//	state, err := w.Wait(ctx, id)
//	if err == nil && state == statemachine.Exception {
//		info, err := q.Inspect(ctx, id)
//		if err == nil && info.Traceback() != nil {
//			log.Printf("job %d failed: %s", id, info.Traceback().ExceptionMessage)
//		}
//	}
//
// The types here are plain data and safe to copy; the functions are pure and
// safe for concurrent use.
package queue
