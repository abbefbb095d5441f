package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// ---------------------------------------------------------------------------
// The two database backends, behind one table.

// fltLifecycle is what the tests use of a backend besides jobwatch.Driver.
// *jwpgx.Backend and *jwpq.Backend both have it.
type fltLifecycle interface {
	jobwatch.Driver
	Install(ctx context.Context) (jwpgx.InstallResult, error)
	Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
	ListenerPIDs() []uint32
	LogTable() string
	QueueTable() string
}

// fltQueueConfig says how to open a backend.
type fltQueueConfig struct {
	dsn       string // status reads and writes
	listenDSN string // the listening connection; "" means dsn
	schema    string // "" for none (the search_path)
	prefix    string
	health    time.Duration // the subscription's health-check interval; 0 keeps the default
	logger    *slog.Logger  // the backend's logger; nil discards
}

// fltQueue is one backend opened by an fltBackendKind.
type fltQueue struct {
	fltLifecycle              // reads and writes go here
	listener     fltLifecycle // whose Listen a Watcher uses (the same backend unless listenDSN differs)
}

// driver is the queue as a Watcher sees it, observed by rec: Listen on
// the listener, status reads on the queue.
func (q *fltQueue) driver(rec *fltRecorder) *fltObserved {
	return &fltObserved{listen: q.listener, read: q.fltLifecycle, rec: rec}
}

type fltBackendKind struct {
	name string
	// open opens a backend on c; every pool it opens is closed at cleanup.
	open func(t *testing.T, c fltQueueConfig) *fltQueue
	// errUnhealthy is the backend's "health check failed" sentinel.
	errUnhealthy error
	// sqlstate returns the SQLSTATE of the server error in err's chain, ""
	// when there is none.
	sqlstate func(err error) string
}

// fltKinds is the table every fault test runs over.
var fltKinds = []fltBackendKind{
	{name: "pgx", open: fltOpenPgx, errUnhealthy: jwpgx.ErrUnhealthy, sqlstate: fltPgxSQLState},
	{name: "pq", open: fltOpenPq, errUnhealthy: jwpq.ErrUnhealthy, sqlstate: fltPqSQLState},
}

// fltOpenPgx opens a pgx backend. With a separate listenDSN it opens a second
// pool and backend for listening only, as the README suggests when the
// listener must take another path (PgBouncer, here a proxy).
func fltOpenPgx(t *testing.T, c fltQueueConfig) *fltQueue {
	t.Helper()
	var opts []jwpgx.Option
	if c.schema != "" {
		opts = append(opts, jwpgx.WithSchema(c.schema))
	}
	if c.prefix != "" {
		opts = append(opts, jwpgx.WithPrefix(c.prefix))
	}
	if c.health > 0 {
		opts = append(opts, jwpgx.WithHealthCheck(c.health))
	}
	if c.logger != nil {
		opts = append(opts, jwpgx.WithLogger(c.logger))
	}
	open := func(dsn string) *jwpgx.Backend {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("pgx: parse DSN: %v", err)
		}
		cfg.MaxConns = 6
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatalf("pgx: pool: %v", err)
		}
		t.Cleanup(pool.Close)
		b, err := jwpgx.New(pool, opts...)
		if err != nil {
			t.Fatalf("pgx: New: %v", err)
		}
		return b
	}
	b := open(c.dsn)
	q := &fltQueue{fltLifecycle: b, listener: b}
	if c.listenDSN != "" && c.listenDSN != c.dsn {
		q.listener = open(c.listenDSN)
	}
	return q
}

// fltOpenPq opens a lib/pq backend: queries through a sqlx pool on dsn, the
// listener's own connections from listenDSN.
func fltOpenPq(t *testing.T, c fltQueueConfig) *fltQueue {
	t.Helper()
	var opts []jwpq.Option
	if c.schema != "" {
		opts = append(opts, jwpq.WithSchema(c.schema))
	}
	if c.prefix != "" {
		opts = append(opts, jwpq.WithPrefix(c.prefix))
	}
	if c.health > 0 {
		opts = append(opts, jwpq.WithHealthCheck(c.health))
	}
	if c.logger != nil {
		opts = append(opts, jwpq.WithLogger(c.logger))
	}
	db, err := sqlx.Open("postgres", c.dsn)
	if err != nil {
		t.Fatalf("pq: open: %v", err)
	}
	db.SetMaxOpenConns(6)
	db.SetMaxIdleConns(4)
	t.Cleanup(func() { _ = db.Close() })
	listen := c.listenDSN
	if listen == "" {
		listen = c.dsn
	}
	b, err := jwpq.New(db, listen, opts...)
	if err != nil {
		t.Fatalf("pq: New: %v", err)
	}
	return &fltQueue{fltLifecycle: b, listener: b}
}

func fltPgxSQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func fltPqSQLState(err error) string {
	var pqErr *libpq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

// fltWithUser returns the URL dsn connecting as user (no password: the test
// server trusts local connections).
func fltWithUser(t *testing.T, dsn, user string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Fatalf("the test DSN must be a URL with a host to connect as another role (got a parse error %v)", err)
	}
	u.User = url.User(user)
	return u.String()
}

// ---------------------------------------------------------------------------
// Jobs.

// fltWantState is the final state each job is driven to: a third each.
func fltWantState(id jobwatch.JobID) statemachine.State {
	switch id % 3 {
	case 0:
		return statemachine.Successful
	case 1:
		return statemachine.Exception
	default:
		return statemachine.Canceled
	}
}

// fltEnqueue adds n plain jobs, in statements of at most 5,000.
func fltEnqueue(ctx context.Context, q fltLifecycle, n int) ([]jobwatch.JobID, error) {
	ids := make([]jobwatch.JobID, 0, n)
	for len(ids) < n {
		jobs := make([]queue.NewJob, min(5000, n-len(ids)))
		for i := range jobs {
			jobs[i] = queue.NewJob{Entrypoint: "reliability"}
		}
		got, err := q.Enqueue(ctx, jobs...)
		if err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// fltMustEnqueue is fltEnqueue for the test goroutine.
func fltMustEnqueue(t *testing.T, ctx context.Context, q fltLifecycle, n int) []jobwatch.JobID {
	t.Helper()
	ids, err := fltEnqueue(ctx, q, n)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// fltSettle brings queued jobs to fltWantState through q's real write path, in at
// most four transactions whatever their number: cancel a third, claim the
// rest, then complete or fail them.
func fltSettle(ctx context.Context, q fltLifecycle, ids []jobwatch.JobID) error {
	var cancel, claim, complete, fail []jobwatch.JobID
	for _, id := range ids {
		switch fltWantState(id) {
		case statemachine.Canceled:
			cancel = append(cancel, id)
		case statemachine.Successful:
			claim, complete = append(claim, id), append(complete, id)
		case statemachine.Exception:
			claim, fail = append(claim, id), append(fail, id)
		}
	}
	steps := []struct {
		ev  statemachine.Event
		ids []jobwatch.JobID
	}{{statemachine.Cancel, cancel}, {statemachine.Claim, claim}, {statemachine.Complete, complete}, {statemachine.Error, fail}}
	for _, s := range steps {
		if len(s.ids) == 0 {
			continue
		}
		if err := q.Apply(ctx, s.ev, s.ids...); err != nil {
			return fmt.Errorf("settle %d jobs: %s: %w", len(ids), s.ev, err)
		}
	}
	return nil
}

// fltSettleTxs is how many notifications fltSettle(ids) sends: one for
// each transaction that deletes (cancel, complete, error). Its claim is an
// UPDATE, which the trigger, like PgQueuer's, does not announce.
func fltSettleTxs(ids []jobwatch.JobID) int {
	var cancel, complete, fail bool
	for _, id := range ids {
		switch fltWantState(id) {
		case statemachine.Canceled:
			cancel = true
		case statemachine.Successful:
			complete = true
		case statemachine.Exception:
			fail = true
		}
	}
	n := 0
	for _, b := range []bool{cancel, complete, fail} {
		if b {
			n++
		}
	}
	return n
}

func fltMustSettle(t *testing.T, ctx context.Context, q fltLifecycle, ids []jobwatch.JobID) {
	t.Helper()
	if err := fltSettle(ctx, q, ids); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// Observing what the Watcher does: every Listen, status read, subscription
// failure and log line becomes an event, and a test can block until the
// events satisfy a condition (a signal, not a poll).

// fltEvKind is what an event records.
type fltEvKind int

const (
	fltEvListen    fltEvKind = iota // a successful Listen
	fltEvListenErr                  // a failed Listen
	fltEvRead                       // a successful FetchStatuses
	fltEvReadErr                    // a failed FetchStatuses
	fltEvSubErr                     // a subscription's Next failed (not because of ctx or Close)
	fltEvNote                       // a subscription's Next delivered a notification
	fltEvLog                        // a log record (Watcher or backend)
)

func (k fltEvKind) String() string {
	return [...]string{"listen", "listen-error", "read", "read-error", "subscription-error", "notification", "log"}[k]
}

// fltEvent is one observed call or log record.
type fltEvent struct {
	kind    fltEvKind
	at, end time.Time // when the call started and returned
	pid     uint32    // the subscription's server pid
	ids     int       // ids in a read
	err     error
	msg     string
}

// fltRecorder collects the events of one test.
type fltRecorder struct {
	start time.Time

	mu      sync.Mutex
	events  []fltEvent
	changed chan struct{} // closed and replaced by every add
}

func fltNewRecorder() *fltRecorder {
	return &fltRecorder{start: time.Now(), changed: make(chan struct{})}
}

func (r *fltRecorder) add(e fltEvent) {
	if e.end.IsZero() {
		e.end = e.at
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// snapshot returns a copy of the events so far.
func (r *fltRecorder) snapshot() []fltEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fltEvent(nil), r.events...)
}

// await blocks until cond holds for the events so far, re-checking on each
// new event, or until ctx ends (an error naming what it waited for). cond
// runs under the recorder's lock and must not keep the slice.
func (r *fltRecorder) await(ctx context.Context, what string, cond func([]fltEvent) bool) error {
	for {
		r.mu.Lock()
		ok, ch := cond(r.events), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting until %s: %w", what, context.Cause(ctx))
		}
	}
}

// fltOf returns the events of kind k that started in [from, to).
func fltOf(evs []fltEvent, k fltEvKind, from, to time.Time) []fltEvent {
	var out []fltEvent
	for _, e := range evs {
		if e.kind == k && !e.at.Before(from) && e.at.Before(to) {
			out = append(out, e)
		}
	}
	return out
}

// fltForever is a time after every event.
var fltForever = time.Now().Add(100 * 365 * 24 * time.Hour)

// dump formats the last n events, for failure messages.
func (r *fltRecorder) dump(n int) string {
	evs := r.snapshot()
	var b strings.Builder
	fmt.Fprintf(&b, "%d events; the last %d (ms since the test began):\n", len(evs), min(n, len(evs)))
	for _, e := range evs[max(0, len(evs)-n):] {
		fmt.Fprintf(&b, "  %8.1f %-18s", float64(e.at.Sub(r.start).Microseconds())/1000, e.kind)
		if e.pid != 0 {
			fmt.Fprintf(&b, " pid=%d", e.pid)
		}
		if e.ids != 0 {
			fmt.Fprintf(&b, " ids=%d", e.ids)
		}
		if e.msg != "" {
			fmt.Fprintf(&b, " %s", e.msg)
		}
		if e.err != nil {
			fmt.Fprintf(&b, " err=%v", e.err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// dumpOnFailure logs the recorder's last events when t fails.
func (r *fltRecorder) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(r.dump(80))
		}
	})
}

// fltLogHandler records log records at Info and above as events.
type fltLogHandler struct {
	rec   *fltRecorder
	attrs []slog.Attr
}

func (h *fltLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *fltLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	var err error
	add := func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && a.Key == "err" {
			err = e
			return true
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.rec.add(fltEvent{kind: fltEvLog, at: r.Time, msg: b.String(), err: err})
	return nil
}

func (h *fltLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &fltLogHandler{rec: h.rec, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *fltLogHandler) WithGroup(string) slog.Handler { return h }

// fltObserved is a jobwatch.Driver that forwards to a backend (Listen to
// listen, FetchStatuses to read) and records every call.
type fltObserved struct {
	listen, read jobwatch.Driver
	rec          *fltRecorder
}

func (o *fltObserved) Listen(ctx context.Context) (jobwatch.Subscription, error) {
	start := time.Now()
	sub, err := o.listen.Listen(ctx)
	if err != nil {
		o.rec.add(fltEvent{kind: fltEvListenErr, at: start, end: time.Now(), err: err})
		return nil, err
	}
	var pid uint32
	if p, ok := sub.(interface{ PID() uint32 }); ok {
		pid = p.PID()
	}
	o.rec.add(fltEvent{kind: fltEvListen, at: start, end: time.Now(), pid: pid})
	return &fltObservedSub{inner: sub, rec: o.rec, pid: pid}, nil
}

func (o *fltObserved) FetchStatuses(ctx context.Context, ids []jobwatch.JobID) ([]jobwatch.Status, error) {
	start := time.Now()
	st, err := o.read.FetchStatuses(ctx, ids)
	k := fltEvRead
	if err != nil {
		k = fltEvReadErr
	}
	o.rec.add(fltEvent{kind: k, at: start, end: time.Now(), ids: len(ids), err: err})
	return st, err
}

// fltObservedSub records why a subscription died. It keeps the backend's
// IgnoredCounter visible to the Watcher.
type fltObservedSub struct {
	inner jobwatch.Subscription
	rec   *fltRecorder
	pid   uint32
}

func (s *fltObservedSub) Next(ctx context.Context) (jobwatch.Notification, error) {
	n, err := s.inner.Next(ctx)
	switch {
	case err == nil:
		s.rec.add(fltEvent{kind: fltEvNote, at: time.Now(), pid: s.pid, ids: len(n.IDs)})
	case ctx.Err() == nil:
		s.rec.add(fltEvent{kind: fltEvSubErr, at: time.Now(), pid: s.pid, err: err})
	}
	return n, err
}

func (s *fltObservedSub) Close() error { return s.inner.Close() }

func (s *fltObservedSub) Ignored() uint64 {
	if ic, ok := s.inner.(jobwatch.IgnoredCounter); ok {
		return ic.Ignored()
	}
	return 0
}

// fltNewWatcher starts a Watcher on d that logs into rec, closed at cleanup
// (before the pools opened earlier, which close after it).
func fltNewWatcher(t *testing.T, d jobwatch.Driver, rec *fltRecorder, opts ...jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	opts = append([]jobwatch.Option{jobwatch.WithLogger(slog.New(&fltLogHandler{rec: rec}))}, opts...)
	w, err := jobwatch.New(d, opts...)
	if err != nil {
		t.Fatalf("jobwatch.New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Watcher.Close: %v", err)
		}
		if m := w.Stats().MissedChanges; m != 0 {
			t.Errorf("Stats.MissedChanges = %d: the change feed missed changes a full read found", m)
		}
	})
	return w
}

// ---------------------------------------------------------------------------
// Waiting.

// fltResult is one pair from WaitEach.
type fltResult struct {
	st  jobwatch.Status
	err error
}

// fltTracker consumes a WaitEach over a set of jobs in a goroutine of its own
// and lets the test block until given jobs have settled, checking each
// outcome (the right state, once, no error) as it comes.
type fltTracker struct {
	ch   chan fltResult
	want map[jobwatch.JobID]bool // ids waited on

	got map[jobwatch.JobID]statemachine.State // owned by the test goroutine
}

// fltWatchEach starts w.WaitEach(ctx, ids). The iteration ends when every job
// settled, ctx ends or the Watcher closes.
func fltWatchEach(ctx context.Context, w *jobwatch.Watcher, ids []jobwatch.JobID) *fltTracker {
	tr := &fltTracker{
		ch:   make(chan fltResult, len(ids)+1),
		want: make(map[jobwatch.JobID]bool, len(ids)),
		got:  make(map[jobwatch.JobID]statemachine.State, len(ids)),
	}
	for _, id := range ids {
		tr.want[id] = true
	}
	go func() {
		defer close(tr.ch)
		for st, err := range w.WaitEach(ctx, ids) {
			tr.ch <- fltResult{st, err}
		}
	}()
	return tr
}

// await blocks until every job of ids has settled (or ctx ends), failing on
// a wrong state, a repeat, an error or an early end of the iteration.
func (tr *fltTracker) await(ctx context.Context, what string, ids []jobwatch.JobID) error {
	left := make(map[jobwatch.JobID]bool, len(ids))
	for _, id := range ids {
		if _, ok := tr.got[id]; !ok {
			left[id] = true
		}
	}
	for len(left) > 0 {
		select {
		case r, ok := <-tr.ch:
			if !ok {
				return fmt.Errorf("%s: WaitEach ended with %d of %d jobs unsettled", what, len(left), len(ids))
			}
			if r.err != nil {
				return fmt.Errorf("%s: WaitEach yielded %v for job %d", what, r.err, r.st.ID)
			}
			if !tr.want[r.st.ID] {
				return fmt.Errorf("%s: WaitEach yielded job %d, which nobody waits for", what, r.st.ID)
			}
			if prev, dup := tr.got[r.st.ID]; dup {
				return fmt.Errorf("%s: job %d yielded twice (%v, then %v)", what, r.st.ID, prev, r.st.State)
			}
			if want := fltWantState(r.st.ID); r.st.State != want {
				return fmt.Errorf("%s: job %d settled as %v, want %v", what, r.st.ID, r.st.State, want)
			}
			tr.got[r.st.ID] = r.st.State
			delete(left, r.st.ID)
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d jobs still unsettled: %w", what, len(left), len(ids), context.Cause(ctx))
		}
	}
	return nil
}

// fltEventually polls cond until it holds or ctx ends. Only for what nothing
// signals (the Watcher's Stats counters): everything else is awaited on a
// channel or the recorder.
func fltEventually(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting until %s: %w", what, context.Cause(ctx))
		}
	}
	return nil
}

// fltTestContext is bounded by d and cancelled at cleanup, so that nothing a
// test starts can outlive it or hang the run.
func fltTestContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeoutCause(context.Background(), d,
		fmt.Errorf("%s ran out of its %v budget", t.Name(), d))
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------
// The Watcher's backoff schedule (backoff.go), to derive bounds from it
// rather than guess them: retry k (1-based) waits min doubled k-1 times
// (doubling stops once at or above max), jittered by ±20%, capped at max.

func fltNominalBackoff(k int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < k && d < hi; i++ {
		d *= 2
	}
	return d
}

// fltShortestBackoff is the least retry k can wait (less a microsecond for
// rounding in the jitter's floating point).
func fltShortestBackoff(k int, lo, hi time.Duration) time.Duration {
	return min(time.Duration(float64(fltNominalBackoff(k, lo, hi))*0.8), hi) - time.Microsecond
}

// fltMaxAttempts is the most attempts a retry loop on this schedule can make
// within a window of length w: one at its very start, then one after each
// shortest possible delay. Delays only grow until a success, so this holds
// wherever in the schedule the window begins.
func fltMaxAttempts(w, lo, hi time.Duration) int {
	n, t := 1, time.Duration(0)
	for k := 1; ; k++ {
		t += fltShortestBackoff(k, lo, hi)
		if t > w {
			return n
		}
		n++
	}
}

// fltHold keeps a deliberate fault in place until the given time: the
// stretch of time is the fault itself, not a wait for an event. It ends
// early, with ctx's cause, when the test runs out of time.
func fltHold(ctx context.Context, until time.Time) error {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// fltAwaitQuiet waits until a status read has started after the last of
// notes notifications: from then on nothing read before a cut is left to
// run after it, so what settles during the cut can only be found by the
// read that follows the next subscription.
func fltAwaitQuiet(ctx context.Context, rec *fltRecorder, notes int) error {
	return rec.await(ctx, "a status read after the last notification", func(evs []fltEvent) bool {
		ns := fltOf(evs, fltEvNote, rec.start, fltForever)
		return len(ns) >= notes && len(fltOf(evs, fltEvRead, ns[len(ns)-1].at, fltForever)) > 0
	})
}
