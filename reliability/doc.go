// Package reliability is jobwatch's reliability suite: tests against a real
// PostgreSQL, run on both database backends (backends/pgx and
// backends/pq), that put the Watcher and the backends under faults, load
// and hostile input, and check that no waiter is ever lost, that nothing
// spins, and that every goroutine ends. The package has no code of its own;
// everything is in its _test.go files, each of which describes itself.
//
// The fault-injection tests (fault_*_test.go) break the server under a
// running Watcher:
//
//   - TestFaultListenerKilled: pg_terminate_backend on the listening
//     connection, twenty times, while 10,000 jobs settle; every waiter
//     resolves with the right status, through the full read that follows
//     each reconnect (the safety-net poll is set to an hour so it cannot
//     help).
//   - TestFaultServerRestart: a private PostgreSQL (initdb into a temporary
//     directory, on a free port) is stopped and started again under the
//     Watcher; waits made during the outage wait for their own context,
//     retries stay within the backoff schedule, and everything resolves
//     once the server is back.
//   - TestFaultHalfOpenListener: the listening connection goes through a
//     TCP proxy that silently stops forwarding; the subscription's health
//     check notices, the Watcher reconnects and re-reads what it missed.
//   - TestFaultStatusReadsFail: the Watcher's own role loses SELECT on the
//     log table for a while; failed reads follow the backoff schedule, the
//     permission error is reported in Stats, and everything resolves once
//     the grant is back.
//   - TestFaultHalfOpenReadConnection: the pooled connection the status
//     reads use goes half-open; each read is bounded by the call timeout,
//     fails, and is retried on a fresh connection.
//   - TestFaultListenOnDeadPooledConnection: after a cut, the pool hands
//     Listen a dead idle connection; Listen fails at the call timeout
//     instead of hanging, and the Watcher listens again on a fresh one.
//
// Prerequisites: the test database of internal/pgtest
// (JOBWATCH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test) reached as a superuser (the
// tests create roles and terminate backends); and for TestFaultServerRestart
// the PostgreSQL server binaries (initdb, pg_ctl, postgres: found through
// JOBWATCH_PG_BINDIR, pg_config --bindir, or /usr/lib/postgresql/*/bin)
// and, when the tests run as root, the unprivileged OS user "postgres" to
// run the private server as. A missing prerequisite fails the test with a
// message saying what is missing; no test is ever skipped.
package reliability
