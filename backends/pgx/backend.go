// Package pgx is the jobwatch backend for jackc/pgx v5: a jobwatch.Driver
// over a *pgxpool.Pool, the PgQueuer-compatible installer, and the job
// lifecycle of queue.Queue (enqueue, claim, complete, ..., inspect) with
// every write in one transaction.
//
// Listening takes one connection out of the pool for each subscription
// (acquired, then hijacked: it never returns to the pool) and checks it end
// to end while idle: after each health-check interval without traffic it
// sends a probe notification from the pool and expects it back on the
// listening connection, so a half-open connection is found within two
// intervals.
//
// The SQL, and the logic around it, is shared with backends/pq
// (backends/internal/pgschema and pgcore), so both read and write the same
// tables the same way.
package pgx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/internal/listener"
	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

// Sentinel errors, matched with errors.Is. They are shared with the other
// PostgreSQL backend (the same values).
var (
	// ErrInvalidIdentifier: a prefix or schema that cannot name the objects.
	ErrInvalidIdentifier = pgschema.ErrInvalidIdentifier
	// ErrPartialInstall: some but not all of the queue's objects exist.
	ErrPartialInstall = pgschema.ErrPartialInstall
	// ErrInvalidOption: an option New rejects.
	ErrInvalidOption = errors.New("jobwatch/pgx: invalid option")
	// ErrSubscriptionClosed is returned by Next after Close.
	ErrSubscriptionClosed = errors.New("jobwatch/pgx: subscription closed")
	// ErrUnhealthy: the listening connection failed its health check.
	ErrUnhealthy = errors.New("jobwatch/pgx: listener health check failed")
	// ErrStuck is wrapped by Subscription.Close's error when a blocked Next
	// did not let go of the connection within the close timeout (it was
	// aborted and left behind).
	ErrStuck = listener.ErrStuck
)

// DefaultHealthCheck is the default idle interval after which a
// subscription checks its connection.
const DefaultHealthCheck = 5 * time.Second

// Option configures New.
type Option func(*options)

type options = pgcore.Options

// WithPrefix prepends prefix to every object name and to the channel, as
// PgQueuer's PGQUEUER_PREFIX does. Letters, digits, '_' and '-' only; at
// most pgschema.MaxPrefixBytes (31) bytes.
func WithPrefix(prefix string) Option { return func(o *options) { o.Prefix = prefix } }

// WithSchema qualifies every object with schema. Without it names resolve
// through the connection's search_path, as PgQueuer's do.
func WithSchema(schema string) Option { return func(o *options) { o.Schema = schema } }

// WithHealthCheck sets how long a subscription may sit idle before it checks
// its connection end to end (and how long the check may take). 0 disables
// the check; negative is an error. Default DefaultHealthCheck.
func WithHealthCheck(interval time.Duration) Option {
	return func(o *options) { o.Health = interval }
}

// WithLogger sets the logger (default: discard). Subscriptions log ignored
// notifications at debug level and failed health checks at warn level.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.Logger = l } }

// Backend is the pgx backend: a jobwatch.Driver and the job lifecycle over a
// pgxpool. It is safe for concurrent use. It does not own the pool.
type Backend struct {
	pool   *pgxpool.Pool
	names  pgschema.Names
	core   *pgcore.Core
	health time.Duration
	log    *slog.Logger
	subs   pgcore.Subscriptions[*Subscription]
	conns  atomic.Int64 // listening connections not yet closed

	beforeProbe func(context.Context) error // test hook, see listener.Config
}

var (
	_ jobwatch.Driver     = (*Backend)(nil)
	_ jobwatch.ChangeFeed = (*Backend)(nil)
)

// New returns a backend over pool. It validates the options (an error
// matches ErrInvalidOption or ErrInvalidIdentifier) and touches no
// database.
func New(pool *pgxpool.Pool, opts ...Option) (*Backend, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidOption)
	}
	o, names, err := pgcore.ApplyOptions(opts, options{Health: DefaultHealthCheck}, ErrInvalidOption)
	if err != nil {
		return nil, err
	}
	core := pgcore.New(pgcore.Config{Names: names, DB: newPoolDB(pool), Prefix: "jobwatch/pgx", PgError: pgError})
	return &Backend{pool: pool, names: names, core: core, health: o.Health, log: o.Logger}, nil
}

// Channel returns the NOTIFY channel, verbatim.
func (b *Backend) Channel() string { return b.names.Channel }

// QueueTable and LogTable return the quoted, qualified table names, for
// callers writing their own SQL.
func (b *Backend) QueueTable() string { return b.names.QueueTable() }

// LogTable returns the quoted, qualified log table name.
func (b *Backend) LogTable() string { return b.names.LogTable() }

// InstallResult is what Install did: Created (it created every object) and
// Changes (what it changed in an earlier installation, in order; empty when
// nothing changed).
type InstallResult = pgschema.InstallResult

// Install creates the objects PgQueuer's installer creates, under the same
// names (prefixed and schema-qualified as configured): the status enum, the
// queue, log, statistics and schedules tables with every index of
// PgQueuer's, the trigger function and the statement-level trigger, which
// notifies on insert, delete and truncate but not on update, as PgQueuer's
// does. It creates the schema when it is missing. Everything runs in one
// transaction under an advisory lock, so concurrent installers do not race:
// one creates, the others find the work done. It blocks until then, and
// fails (changing nothing) when ctx ends first.
//
// Over a complete installation it changes no data. A PgQueuer installation
// is left as it is (Changes empty). An installation made by an earlier
// jobwatch is brought to the same schema: its two differently named
// indexes are renamed, the missing indexes are created and the trigger
// function that notified on every update is replaced; Changes lists each
// step. Creating an index blocks writes to its table until the transaction
// commits, and any failure (a deadlock with a concurrent writer, say) rolls
// every step back, so Install can simply be run again. A partial
// installation is left untouched with an error matching ErrPartialInstall.
func (b *Backend) Install(ctx context.Context) (InstallResult, error) { return b.core.Install(ctx) }

// Uninstall drops every object of the queue that exists (the status enum
// with CASCADE), in one transaction under the installer's advisory lock.
// The schema itself is kept.
func (b *Backend) Uninstall(ctx context.Context) error { return b.core.Uninstall(ctx) }

// Installed reports whether every object of the queue exists. A partial
// installation returns false and an error matching ErrPartialInstall.
func (b *Backend) Installed(ctx context.Context) (bool, error) { return b.core.Installed(ctx) }

// FetchStatuses implements jobwatch.Driver: one query, the status of each
// id's newest log row; unknown ids are omitted.
func (b *Backend) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	return b.core.FetchStatuses(ctx, ids)
}

// Changes implements jobwatch.ChangeFeed: the jobs whose log gained rows
// after cursor, with their current status, in one query whatever the
// number of waiters. It reads the log by id and asks again for ids it has
// not seen yet, until the transactions that could still commit them (the
// holders of the log id sequence's lock) have ended, so a transaction that
// commits late (out of id order) is still seen. A row whose status it
// cannot parse is skipped and counted in ChangeSet.Skipped.
func (b *Backend) Changes(ctx context.Context, cursor jobwatch.Cursor) (jobwatch.ChangeSet, error) {
	return b.core.Changes(ctx, cursor)
}

// NotifyRaw sends payload on the channel with pg_notify, from the pool. It
// is what the trigger and PgQueuer do; tests use it to send garbage.
func (b *Backend) NotifyRaw(ctx context.Context, payload string) error {
	return b.core.NotifyRaw(ctx, payload)
}

// ListenerPIDs returns the server process ids of the open subscriptions'
// connections (for pg_stat_activity, pg_terminate_backend, diagnostics).
func (b *Backend) ListenerPIDs() []uint32 { return b.subs.PIDs() }

// OpenSubscriptions returns how many subscriptions Listen returned that are
// not closed yet.
func (b *Backend) OpenSubscriptions() int { return b.subs.Len() }

// ListenerConns returns how many dedicated listening connections the
// Backend holds open now (a failed subscription's is closed at once, a live
// one's by its Close).
func (b *Backend) ListenerConns() int { return int(b.conns.Load()) }
