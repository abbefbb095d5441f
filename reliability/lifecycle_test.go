package reliability_test

// The job lifecycle under concurrency, on both database backends: eight
// workers claiming 10,000 jobs, racing illegal transitions, and connections
// killed in the middle of a transition.
//
// This file also holds the helpers the other files of issue 6 (input_test.go,
// hostile_test.go, load_test.go) share: one environment per backend kind,
// built the same way for pgx and pq, and the queue/log agreement check.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the "postgres" database/sql driver

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	jwpq "github.com/jobwatch/jobwatch/backends/pq"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// ---------------------------------------------------------------------------
// Shared helpers.

// stressKinds are the database backends every database test runs on.
var stressKinds = []string{"pgx", "pq"}

// stressBackend is what both database backends offer (queue.Queue and
// more).
type stressBackend interface {
	jobwatch.Driver
	Install(ctx context.Context) (jwpgx.InstallResult, error)
	Installed(ctx context.Context) (bool, error)
	Uninstall(ctx context.Context) error
	Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error)
	Claim(ctx context.Context, req queue.ClaimRequest) ([]queue.Job, error)
	Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error
	Exception(ctx context.Context, id jobwatch.JobID, tb queue.Traceback) error
	NotifyRaw(ctx context.Context, payload string) error
	Channel() string
	QueueTable() string
	LogTable() string
	ListenerPIDs() []uint32
}

var (
	_ stressBackend = (*jwpgx.Backend)(nil)
	_ stressBackend = (*jwpq.Backend)(nil)
)

// stressHandles are the database handles one backend instance runs on: a pgx
// pool for pgx, a sqlx pool and the DSN for pq.
type stressHandles struct {
	kind string
	pool *pgxpool.Pool
	db   *sqlx.DB
	dsn  string
}

// stressOpts are the backend options, spelled once for both backends.
type stressOpts struct {
	prefix, schema string
	logger         *slog.Logger   // nil: none given
	health         *time.Duration // nil: the default
	nilOption      bool           // append a nil Option
}

// newStressBackend builds a backend of h.kind on h with o. It never returns a
// typed nil.
func newStressBackend(h stressHandles, o stressOpts) (stressBackend, error) {
	switch h.kind {
	case "pgx":
		opts := []jwpgx.Option{jwpgx.WithPrefix(o.prefix), jwpgx.WithSchema(o.schema)}
		if o.logger != nil {
			opts = append(opts, jwpgx.WithLogger(o.logger))
		}
		if o.health != nil {
			opts = append(opts, jwpgx.WithHealthCheck(*o.health))
		}
		if o.nilOption {
			opts = append(opts, nil)
		}
		b, err := jwpgx.New(h.pool, opts...)
		if err != nil {
			return nil, err
		}
		return b, nil
	case "pq":
		opts := []jwpq.Option{jwpq.WithPrefix(o.prefix), jwpq.WithSchema(o.schema)}
		if o.logger != nil {
			opts = append(opts, jwpq.WithLogger(o.logger))
		}
		if o.health != nil {
			opts = append(opts, jwpq.WithHealthCheck(*o.health))
		}
		if o.nilOption {
			opts = append(opts, nil)
		}
		b, err := jwpq.New(h.db, h.dsn, opts...)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	panic("unknown backend kind " + h.kind)
}

// stressInvalidOption is the ErrInvalidOption of a backend kind.
func stressInvalidOption(kind string) error {
	if kind == "pgx" {
		return jwpgx.ErrInvalidOption
	}
	return jwpq.ErrInvalidOption
}

// stressDSNParam returns dsn (URL or key=value) with one more parameter.
func stressDSNParam(dsn, key, value string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			panic(err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
}

// openStressHandles opens the pool(s) of a backend kind on dsn, tagging their
// connections with appName (when not empty). close closes them (once); it
// also runs at cleanup.
func openStressHandles(t *testing.T, kind, dsn, appName string, maxConns int) (h stressHandles, close func()) {
	t.Helper()
	if maxConns <= 0 {
		maxConns = 8
	}
	h = stressHandles{kind: kind, dsn: dsn}
	var once sync.Once
	switch kind {
	case "pgx":
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("pgxpool.ParseConfig: %v", err)
		}
		cfg.MaxConns = int32(maxConns)
		if appName != "" {
			cfg.ConnConfig.RuntimeParams["application_name"] = appName
		}
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatalf("pgxpool: %v", err)
		}
		h.pool = pool
		close = func() { once.Do(pool.Close) }
	case "pq":
		if appName != "" {
			h.dsn = stressDSNParam(dsn, "application_name", appName)
		}
		db, err := sqlx.Open("postgres", h.dsn)
		if err != nil {
			t.Fatalf("sqlx.Open: %v", err)
		}
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(maxConns)
		h.db = db
		close = func() { once.Do(func() { _ = db.Close() }) }
	default:
		t.Fatalf("unknown backend kind %q", kind)
	}
	t.Cleanup(close)
	return h, close
}

// openStressAdmin opens a small pgx pool for the test's own SQL (setup, checks,
// killing connections), closed at cleanup or by the returned function.
func openStressAdmin(t *testing.T) (*pgxpool.Pool, func()) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "jobwatch-reliability-admin"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("admin pool: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("cannot reach the test database at %s (set %s; these tests never skip): %v",
			pgtest.EnvDSN, pgtest.EnvDSN, err)
	}
	var once sync.Once
	closeFn := func() { once.Do(pool.Close) }
	t.Cleanup(closeFn)
	return pool, closeFn
}

// stressEnvOpts tune newStressEnv.
type stressEnvOpts struct {
	appName  string // application_name of the backend's pool connections
	maxConns int    // default 8
	logger   *slog.Logger
	health   *time.Duration
}

// stressEnv is one isolated installation on one backend kind: a fresh schema, and
// a prefix equal to the schema's name so that its channel is not shared
// with any other test.
type stressEnv struct {
	t      *testing.T
	kind   string
	ctx    context.Context
	b      stressBackend
	h      stressHandles
	schema string
	prefix string
	admin  *pgxpool.Pool

	closeDB, closeAdmin func()
}

func newStressEnv(t *testing.T, kind string, o stressEnvOpts) *stressEnv {
	t.Helper()
	admin, closeAdmin := openStressAdmin(t)
	schema := pgtest.Schema(t)
	h, closeDB := openStressHandles(t, kind, pgtest.DSN(), o.appName, o.maxConns)
	e := &stressEnv{t: t, kind: kind, ctx: pgtest.Context(t), h: h, schema: schema, prefix: schema + "_",
		admin: admin, closeDB: closeDB, closeAdmin: closeAdmin}
	b, err := newStressBackend(h, stressOpts{prefix: e.prefix, schema: schema, logger: o.logger, health: o.health})
	if err != nil {
		t.Fatalf("%s.New: %v", kind, err)
	}
	e.b = b
	if res, err := b.Install(e.ctx); err != nil || !res.Created {
		t.Fatalf("%s: Install = %+v, %v; want created, nil", kind, res, err)
	}
	return e
}

// closeAll closes the backend's pool and the admin pool (for leak checks
// before the test ends).
func (e *stressEnv) closeAll() {
	e.closeDB()
	e.closeAdmin()
}

// another returns a second backend instance on the same installation, over
// handles of its own (so that killing one's connections spares the other).
func (e *stressEnv) another(appName string, maxConns int) stressBackend {
	e.t.Helper()
	h, _ := openStressHandles(e.t, e.kind, pgtest.DSN(), appName, maxConns)
	b, err := newStressBackend(h, stressOpts{prefix: e.prefix, schema: e.schema})
	if err != nil {
		e.t.Fatalf("%s.New: %v", e.kind, err)
	}
	return b
}

// enqueue adds n jobs of entrypoint ep, in batches.
func (e *stressEnv) enqueue(n int, ep string) []jobwatch.JobID {
	e.t.Helper()
	var ids []jobwatch.JobID
	for n > 0 {
		batch := min(n, 5000)
		jobs := make([]queue.NewJob, batch)
		for i := range jobs {
			jobs[i] = queue.NewJob{Entrypoint: ep}
		}
		got, err := e.b.Enqueue(e.ctx, jobs...)
		if err != nil {
			e.t.Fatalf("%s: Enqueue(%d): %v", e.kind, batch, err)
		}
		ids = append(ids, got...)
		n -= batch
	}
	return ids
}

// apply applies ev to ids in batches, failing the test on any error.
func (e *stressEnv) apply(ev statemachine.Event, ids ...jobwatch.JobID) {
	e.t.Helper()
	for start := 0; start < len(ids); start += 1000 {
		batch := ids[start:min(start+1000, len(ids))]
		if err := e.b.Apply(e.ctx, ev, batch...); err != nil {
			e.t.Fatalf("%s: Apply(%s, %d ids): %v", e.kind, ev, len(batch), err)
		}
	}
}

// scalar runs a query returning one int64.
func (e *stressEnv) scalar(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.admin.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// truth returns each job's status per FetchStatuses (absent when unknown).
func (e *stressEnv) truth(ids []jobwatch.JobID) map[jobwatch.JobID]statemachine.State {
	e.t.Helper()
	out := make(map[jobwatch.JobID]statemachine.State, len(ids))
	for start := 0; start < len(ids); start += 5000 {
		sts, err := e.b.FetchStatuses(e.ctx, ids[start:min(start+5000, len(ids))])
		if err != nil {
			e.t.Fatalf("%s: FetchStatuses: %v", e.kind, err)
		}
		for _, s := range sts {
			out[s.ID] = s.State
		}
	}
	return out
}

// stressRecord is everything stored about a job: its queue row's status ("" if
// it has none) and its log rows' statuses in log order (created, id).
type stressRecord struct {
	queue string
	log   []string
}

func stressInt64s(ids []jobwatch.JobID) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

func (e *stressEnv) records(ids []jobwatch.JobID) map[jobwatch.JobID]*stressRecord {
	e.t.Helper()
	out := make(map[jobwatch.JobID]*stressRecord, len(ids))
	for _, id := range ids {
		out[id] = &stressRecord{}
	}
	arg := stressInt64s(ids)
	rows, err := e.admin.Query(e.ctx, "SELECT id, status::text FROM "+e.b.QueueTable()+" WHERE id = ANY($1)", arg)
	if err != nil {
		e.t.Fatalf("read queue rows: %v", err)
	}
	for rows.Next() {
		var id int64
		var st string
		if err := rows.Scan(&id, &st); err != nil {
			e.t.Fatal(err)
		}
		out[jobwatch.JobID(id)].queue = st
	}
	if rows.Err() != nil {
		e.t.Fatal(rows.Err())
	}
	rows, err = e.admin.Query(e.ctx, "SELECT job_id, status::text FROM "+e.b.LogTable()+
		" WHERE job_id = ANY($1) ORDER BY job_id, created, id", arg)
	if err != nil {
		e.t.Fatalf("read log rows: %v", err)
	}
	for rows.Next() {
		var id int64
		var st string
		if err := rows.Scan(&id, &st); err != nil {
			e.t.Fatal(err)
		}
		r := out[jobwatch.JobID(id)]
		r.log = append(r.log, st)
	}
	if rows.Err() != nil {
		e.t.Fatal(rows.Err())
	}
	return out
}

// agreement checks, for each job, that the queue row and the log agree with
// each other and with FetchStatuses: the log starts with queued, each step
// is a legal transition, at most one terminal row and only last; a queue
// row exists exactly when the newest log status is not terminal, and then
// has that status; FetchStatuses returns the newest log status. It returns
// the problems found, one line per job, and the records.
func (e *stressEnv) agreement(ids []jobwatch.JobID) ([]string, map[jobwatch.JobID]*stressRecord) {
	e.t.Helper()
	recs := e.records(ids)
	truth := e.truth(ids)
	var problems []string
	for _, id := range ids {
		r := recs[id]
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("job %d (queue row %q, log %v, FetchStatuses %v): ",
				id, r.queue, r.log, truth[id])+fmt.Sprintf(format, args...))
		}
		if len(r.log) == 0 {
			bad("no log row")
			continue
		}
		if r.log[0] != "queued" {
			bad("first log row is not queued")
		}
		terminal := 0
		prev := statemachine.None
		for i, s := range r.log {
			st, err := statemachine.ParseState(s)
			if err != nil {
				bad("log row %d: %v", i, err)
				continue
			}
			if i > 0 && !stressLegalStep(prev, st) {
				bad("log step %v -> %v is not a legal transition", prev, st)
			}
			if st.Terminal() {
				terminal++
			}
			prev = st
		}
		newest := prev
		switch {
		case terminal > 1:
			bad("%d terminal log rows", terminal)
		case terminal == 1 && !newest.Terminal():
			bad("terminal log row is not the newest")
		}
		if got, ok := truth[id]; !ok || got != newest {
			bad("FetchStatuses disagrees with the newest log row %v", newest)
		}
		switch {
		case newest.Terminal() && r.queue != "":
			bad("terminal job still has a queue row")
		case !newest.Terminal() && r.queue != newest.String():
			bad("queue row does not match the newest log row %v", newest)
		}
	}
	return problems, recs
}

// stressLegalStep reports whether some event takes a job from one state to the
// other.
func stressLegalStep(from, to statemachine.State) bool {
	for _, ev := range statemachine.Events() {
		if got, err := statemachine.Transition(from, ev); err == nil && got == to {
			return true
		}
	}
	return false
}

func stressReport(t *testing.T, kind string, problems []string) {
	t.Helper()
	const show = 20
	for i, p := range problems {
		if i == show {
			t.Errorf("%s: ... and %d more", kind, len(problems)-show)
			break
		}
		t.Errorf("%s: %s", kind, p)
	}
}

// until polls cond (for database states nothing signals) until it holds, or
// fails the test after d.
func stressUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		<-tick.C
	}
}

// stressRecv receives from ch within d, or fails the test.
func stressRecv[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing within %v", what, d)
		panic("unreachable")
	}
}

// newStressWatcher returns a Watcher on d, closed at cleanup.
func newStressWatcher(t *testing.T, d jobwatch.Driver, opts ...jobwatch.Option) *jobwatch.Watcher {
	t.Helper()
	w, err := jobwatch.New(d, opts...)
	if err != nil {
		t.Fatalf("jobwatch.New: %v", err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		if m := w.Stats().MissedChanges; m != 0 {
			t.Errorf("Stats.MissedChanges = %d: the change feed missed changes a full read found", m)
		}
	})
	return w
}

// stressResult is what one Wait returned.
type stressResult struct {
	id    jobwatch.JobID
	state statemachine.State
	err   error
}

// stressGoWait starts w.Wait(ctx, id) and delivers its result on the channel.
func stressGoWait(ctx context.Context, w *jobwatch.Watcher, id jobwatch.JobID) <-chan stressResult {
	ch := make(chan stressResult, 1)
	go func() {
		st, err := w.Wait(ctx, id)
		ch <- stressResult{id, st, err}
	}()
	return ch
}

// stressPending reports whether a stressGoWait channel has not delivered.
func stressPending(ch <-chan stressResult) (stressResult, bool) {
	select {
	case r := <-ch:
		return r, false
	default:
		return stressResult{}, true
	}
}

// stressTargetState is the state an event leads to from the states it is legal in
// (every event but enqueue has exactly one).
func stressTargetState(ev statemachine.Event) statemachine.State {
	for _, s := range statemachine.Sources(ev) {
		if to, err := statemachine.Transition(s, ev); err == nil {
			return to
		}
	}
	return statemachine.None
}

// ---------------------------------------------------------------------------
// Tests.

// TestLifecycleClaimExactlyOnce: eight workers claim 10,000 jobs at once,
// 100 at a time, until nothing is left. Every job is claimed exactly once
// (by the returned jobs, by the queue rows' queue_manager_id, and by
// exactly one 'picked' log row per job).
func TestLifecycleClaimExactlyOnce(t *testing.T) {
	const jobs, workers, limit = 10000, 8, 100
	for _, kind := range stressKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newStressEnv(t, kind, stressEnvOpts{maxConns: workers + 2})
			ids := e.enqueue(jobs, "claim-race")
			want := make(map[jobwatch.JobID]bool, jobs)
			for _, id := range ids {
				want[id] = true
			}

			claimed := make([][]queue.Job, workers)
			errs := make([]error, workers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for {
						got, err := e.b.Claim(e.ctx, queue.ClaimRequest{
							Entrypoints: []string{"claim-race"}, Limit: limit, QueueManagerID: stressWorkerUUID(w)})
						if err != nil {
							errs[w] = err
							return
						}
						if len(got) == 0 {
							return
						}
						claimed[w] = append(claimed[w], got...)
					}
				}()
			}
			began := time.Now()
			close(start)
			wg.Wait()
			t.Logf("%s: %d jobs claimed by %d workers in %v", kind, jobs, workers, time.Since(began).Round(time.Millisecond))

			count := make(map[jobwatch.JobID]int, jobs)
			byWorker := make(map[jobwatch.JobID]int, jobs)
			busy := 0
			for w, js := range claimed {
				if errs[w] != nil {
					t.Errorf("%s: worker %d: Claim: %v", kind, w, errs[w])
				}
				if len(js) > 0 {
					busy++
				}
				for _, j := range js {
					count[j.ID]++
					byWorker[j.ID] = w
					if j.Status != statemachine.Picked || j.QueueManagerID != stressWorkerUUID(w) {
						t.Errorf("%s: worker %d got job %d with status %v, queue manager %x",
							kind, w, j.ID, j.Status, j.QueueManagerID)
					}
				}
			}
			perWorker := make([]int, workers)
			for w := range claimed {
				perWorker[w] = len(claimed[w])
			}
			t.Logf("%s: jobs per worker %v", kind, perWorker)
			if busy < 2 {
				t.Errorf("%s: only %d worker(s) claimed anything: the claims did not run concurrently", kind, busy)
			}
			twice := 0
			for id, n := range count {
				if !want[id] {
					t.Errorf("%s: claimed job %d was never enqueued here", kind, id)
				}
				if n != 1 {
					twice++
					if twice <= 10 {
						t.Errorf("%s: job %d claimed %d times", kind, id, n)
					}
				}
			}
			if len(count) != jobs || twice != 0 {
				t.Fatalf("%s: %d distinct jobs claimed (want %d), %d claimed more than once", kind, len(count), jobs, twice)
			}

			// The database agrees: every queue row picked, by its claimer;
			// exactly one 'picked' log row per job.
			if n := e.scalar("SELECT count(*) FROM " + e.b.QueueTable() + " WHERE status <> 'picked'"); n != 0 {
				t.Errorf("%s: %d queue rows are not picked", kind, n)
			}
			rows, err := e.admin.Query(e.ctx, "SELECT id, queue_manager_id::text FROM "+e.b.QueueTable())
			if err != nil {
				t.Fatal(err)
			}
			mismatched := 0
			for rows.Next() {
				var id int64
				var qm string
				if err := rows.Scan(&id, &qm); err != nil {
					t.Fatal(err)
				}
				if w, ok := byWorker[jobwatch.JobID(id)]; !ok || qm != stressWorkerUUIDText(w) {
					mismatched++
				}
			}
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			if mismatched != 0 {
				t.Errorf("%s: %d queue rows name another queue manager than the worker Claim returned them to", kind, mismatched)
			}
			var picked, distinct, foreign int64
			err = e.admin.QueryRow(e.ctx, "SELECT count(*), count(DISTINCT job_id), count(*) FILTER (WHERE job_id <> ALL($1)) FROM "+
				e.b.LogTable()+" WHERE status = 'picked'", stressInt64s(ids)).Scan(&picked, &distinct, &foreign)
			if err != nil {
				t.Fatal(err)
			}
			if picked != jobs || distinct != jobs || foreign != 0 {
				t.Errorf("%s: log has %d 'picked' rows for %d distinct jobs (%d foreign); want exactly one per job, %d",
					kind, picked, distinct, foreign, jobs)
			}
		})
	}
}

func stressWorkerUUID(w int) [16]byte { return [16]byte{0: 0xa1, 15: byte(w + 1)} }

func stressWorkerUUIDText(w int) string {
	return fmt.Sprintf("a1000000-0000-0000-0000-0000000000%02x", w+1)
}

// stressAttempt is one racing transition: ev on ids, once; with retry set,
// an attempt that lost while the job was not terminal tries once more after
// the attempts in retry (the job's other racers) have all finished.
type stressAttempt struct {
	ev    statemachine.Event
	ids   []jobwatch.JobID
	group *sync.WaitGroup // the attempt belongs to it
	retry *sync.WaitGroup

	won   bool
	tries int
	errs  []error
}

// TestLifecycleIllegalTransitionRace: many goroutines apply complete,
// error, cancel, hold, delete and claim to the same picked jobs at once
// (single jobs, and overlapping pairs for all-or-nothing). Per job there is
// exactly one terminal winner; every loser's error matches
// statemachine.ErrIllegalTransition; the log holds exactly one row per
// winning transition (so a losing multi-job transition wrote nothing, not
// even for its other jobs); queue row, log and FetchStatuses agree.
func TestLifecycleIllegalTransitionRace(t *testing.T) {
	const singles, triples = 160, 40
	for _, kind := range stressKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newStressEnv(t, kind, stressEnvOpts{maxConns: 16})
			ids := e.enqueue(singles+3*triples, "race")
			e.apply(statemachine.Claim, ids...)
			single, triple := ids[:singles], ids[singles:]

			var attempts []*stressAttempt
			add := func(ev statemachine.Event, n int, group, retry *sync.WaitGroup, ids ...jobwatch.JobID) {
				for range n {
					if group != nil {
						group.Add(1)
					}
					attempts = append(attempts, &stressAttempt{ev: ev, ids: ids, group: group, retry: retry})
				}
			}
			for _, id := range single {
				racers := new(sync.WaitGroup)
				add(statemachine.Complete, 2, racers, nil, id)
				add(statemachine.Cancel, 2, racers, nil, id)
				add(statemachine.Error, 1, racers, nil, id)
				add(statemachine.Hold, 2, racers, nil, id)
				add(statemachine.Claim, 1, racers, nil, id) // never legal here: nothing leads back to queued
				// Legal once held: if it loses to a hold, it tries again once
				// the others are done, so every job ends terminal.
				add(statemachine.Delete, 1, nil, racers, id)
			}
			for i := 0; i < len(triple); i += 3 {
				a, b, c := triple[i], triple[i+1], triple[i+2]
				add(statemachine.Complete, 1, nil, nil, a, b)
				add(statemachine.Cancel, 1, nil, nil, b, c)
				add(statemachine.Hold, 1, nil, nil, c, a)
				add(statemachine.Error, 1, nil, nil, c)
			}
			rand.Shuffle(len(attempts), func(i, j int) { attempts[i], attempts[j] = attempts[j], attempts[i] })

			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, a := range attempts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					try := func() bool {
						a.tries++
						err := e.b.Apply(e.ctx, a.ev, a.ids...)
						if err != nil {
							a.errs = append(a.errs, err)
						}
						a.won = err == nil
						return err != nil && !errors.Is(err, context.Canceled)
					}
					lost := try()
					if a.group != nil {
						a.group.Done()
					}
					var te *statemachine.TransitionError
					if lost && a.retry != nil && errors.As(a.errs[0], &te) && !te.From.Terminal() {
						a.retry.Wait()
						try()
					}
				}()
			}
			began := time.Now()
			close(start)
			wg.Wait()
			t.Logf("%s: %d racing transitions on %d jobs in %v", kind, len(attempts), len(ids), time.Since(began).Round(time.Millisecond))

			// Every error is an illegal transition naming one of its jobs.
			wins := map[jobwatch.JobID][]statemachine.State{}
			var won, lost int
			for _, a := range attempts {
				if a.won {
					won++
					for _, id := range a.ids {
						wins[id] = append(wins[id], stressTargetState(a.ev))
					}
				} else {
					lost++
				}
				for _, err := range a.errs {
					var te *statemachine.TransitionError
					if !errors.Is(err, statemachine.ErrIllegalTransition) || !errors.As(err, &te) || !slices.Contains(a.ids, jobwatch.JobID(te.ID)) {
						t.Errorf("%s: %s%v lost with %v; want a *statemachine.TransitionError for one of its jobs", kind, a.ev, a.ids, err)
					}
				}
			}
			heldFirst := 0
			for _, id := range single {
				if slices.Contains(wins[id], statemachine.Failed) {
					heldFirst++
				}
			}
			t.Logf("%s: %d transitions won, %d lost; %d of %d single jobs were held first, then deleted", kind, won, lost, heldFirst, singles)

			problems, recs := e.agreement(ids)
			stressReport(t, kind, problems)
			for _, id := range ids {
				// The log after 'picked' is exactly the winners' states.
				got := slices.Clone(recs[id].log)
				if len(got) < 2 || got[0] != "queued" || got[1] != "picked" {
					t.Errorf("%s: job %d: log %v does not start queued, picked", kind, id, got)
					continue
				}
				got = got[2:]
				want := make([]string, 0, len(wins[id]))
				terminal := 0
				for _, s := range wins[id] {
					want = append(want, s.String())
					if s.Terminal() {
						terminal++
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: job %d: log rows after picked %v, but the winning transitions were %v", kind, id, got, want)
				}
				if terminal > 1 {
					t.Errorf("%s: job %d: %d terminal winners %v", kind, id, terminal, want)
				}
			}
			for _, id := range single {
				n := 0
				for _, s := range wins[id] {
					if s.Terminal() {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s: job %d: %d terminal winners %v, want exactly 1", kind, id, n, wins[id])
				}
			}
		})
	}
}

// blockedBehind waits until a server process is blocked by lockerPID and
// returns its pid.
func (e *stressEnv) blockedBehind(lockerPID uint32) uint32 {
	e.t.Helper()
	var pid uint32
	stressUntil(e.t, 20*time.Second, fmt.Sprintf("a session is blocked by pid %d", lockerPID), func() bool {
		var p int64
		err := e.admin.QueryRow(e.ctx, "SELECT coalesce(max(pid), 0)::bigint FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))",
			int64(lockerPID)).Scan(&p)
		if err != nil {
			e.t.Fatal(err)
		}
		pid = uint32(p)
		return p != 0
	})
	return pid
}

func (e *stressEnv) terminate(pid uint32) {
	e.t.Helper()
	var ok bool
	if err := e.admin.QueryRow(e.ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ok); err != nil || !ok {
		e.t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}

// TestLifecycleKilledMidTransition kills a connection in the middle of a
// transition and checks the queue row and the log agree (the transition
// happened fully or not at all), FetchStatuses says the same, and a
// Watcher waiting on the job is neither resolved wrongly nor lost.
func TestLifecycleKilledMidTransition(t *testing.T) {
	for _, kind := range stressKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newStressEnv(t, kind, stressEnvOpts{maxConns: 6})
			w := newStressWatcher(t, e.another("jwrel-kill-watch", 4), jobwatch.WithDebounce(5*time.Millisecond))

			// lock holds the queue row of id FOR UPDATE in an open
			// transaction on a connection of its own.
			type locker struct {
				pid      uint32
				rollback func()
			}
			lock := func(ids ...jobwatch.JobID) locker {
				conn := pgtest.Connect(t)
				tx, err := conn.Begin(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(e.ctx, "SELECT 1 FROM "+e.b.QueueTable()+" WHERE id = ANY($1) FOR UPDATE", stressInt64s(ids)); err != nil {
					t.Fatal(err)
				}
				return locker{conn.PgConn().PID(), func() { _ = tx.Rollback(e.ctx) }}
			}
			applyAsync := func(ev statemachine.Event, ids ...jobwatch.JobID) <-chan error {
				ch := make(chan error, 1)
				go func() { ch <- e.b.Apply(e.ctx, ev, ids...) }()
				return ch
			}
			check := func(what string, ids ...jobwatch.JobID) map[jobwatch.JobID]*stressRecord {
				t.Helper()
				problems, recs := e.agreement(ids)
				for _, p := range problems {
					t.Errorf("%s: %s: %s", kind, what, p)
				}
				return recs
			}
			// The cases run one after the other on the same installation
			// (not as subtests: the helpers fail the test they were built
			// with).

			func() { // transition killed while blocked
				id := e.enqueue(1, "kill")[0]
				e.apply(statemachine.Claim, id)
				waited := stressGoWait(e.ctx, w, id)
				l := lock(id)
				done := applyAsync(statemachine.Complete, id)
				e.terminate(e.blockedBehind(l.pid))
				err := stressRecv(t, done, 30*time.Second, "Apply on a killed connection")
				l.rollback()
				if err == nil {
					t.Fatalf("%s: Apply on a connection killed mid-statement returned nil", kind)
				}
				t.Logf("%s: killed Apply returned: %v", kind, err)
				if r := check("after the kill", id)[id]; r.queue != "picked" || len(r.log) != 2 {
					t.Errorf("%s: the killed transition left %+v; want the job untouched (picked, 2 log rows)", kind, r)
				}
				if r, pending := stressPending(waited); !pending {
					t.Fatalf("%s: Wait returned %v, %v for a job whose transition was killed", kind, r.state, r.err)
				}
				// The pool recovers; the waiter is not lost.
				e.apply(statemachine.Complete, id)
				if r := stressRecv(t, waited, 30*time.Second, "Wait after the real completion"); r.err != nil || r.state != statemachine.Successful {
					t.Errorf("%s: Wait = %v, %v; want successful", kind, r.state, r.err)
				}
				check("after completing it", id)
			}()

			func() { // lock holder killed
				id := e.enqueue(1, "kill")[0]
				e.apply(statemachine.Claim, id)
				waited := stressGoWait(e.ctx, w, id)
				l := lock(id)
				done := applyAsync(statemachine.Error, id)
				e.blockedBehind(l.pid)
				e.terminate(l.pid)
				if err := stressRecv(t, done, 30*time.Second, "Apply once the lock holder died"); err != nil {
					t.Fatalf("%s: Apply after the lock holder was killed: %v", kind, err)
				}
				if r := check("after the kill", id)[id]; r.queue != "" || !slices.Equal(r.log, []string{"queued", "picked", "exception"}) {
					t.Errorf("%s: the transition left %+v; want it fully done", kind, r)
				}
				if r := stressRecv(t, waited, 30*time.Second, "Wait"); r.err != nil || r.state != statemachine.Exception {
					t.Errorf("%s: Wait = %v, %v; want exception", kind, r.state, r.err)
				}
			}()

			func() { // two-job transition killed half way
				ids := e.enqueue(2, "kill")
				e.apply(statemachine.Claim, ids...)
				waited := stressGoWait(e.ctx, w, ids[0])
				l := lock(ids[1]) // the transition locks ids[0] first, then waits here
				done := applyAsync(statemachine.Cancel, ids...)
				e.terminate(e.blockedBehind(l.pid))
				err := stressRecv(t, done, 30*time.Second, "Apply on a killed connection")
				l.rollback()
				if err == nil {
					t.Fatalf("%s: Apply on a killed connection returned nil", kind)
				}
				recs := check("after the kill", ids...)
				for _, id := range ids {
					if r := recs[id]; r.queue != "picked" || len(r.log) != 2 {
						t.Errorf("%s: job %d: the killed transition left %+v; want it untouched", kind, id, r)
					}
				}
				if r, pending := stressPending(waited); !pending {
					t.Fatalf("%s: Wait returned %v, %v for an untouched job", kind, r.state, r.err)
				}
				e.apply(statemachine.Cancel, ids...)
				if r := stressRecv(t, waited, 30*time.Second, "Wait"); r.err != nil || r.state != statemachine.Canceled {
					t.Errorf("%s: Wait = %v, %v; want canceled", kind, r.state, r.err)
				}
			}()

			func() { // enqueue killed while blocked on its dedupe key
				key := "dedupe-" + pgtest.UniqueName()
				conn := pgtest.Connect(t)
				tx, err := conn.Begin(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(e.ctx, "INSERT INTO "+e.b.QueueTable()+
					" (priority, entrypoint, dedupe_key, status) VALUES (0, 'kill', $1, 'queued')", key); err != nil {
					t.Fatal(err)
				}
				logRows := e.scalar("SELECT count(*) FROM " + e.b.LogTable())
				done := make(chan error, 1)
				go func() {
					_, err := e.b.Enqueue(e.ctx, queue.NewJob{Entrypoint: "kill", DedupeKey: key})
					done <- err
				}()
				e.terminate(e.blockedBehind(conn.PgConn().PID()))
				err = stressRecv(t, done, 30*time.Second, "Enqueue on a killed connection")
				_ = tx.Rollback(e.ctx)
				if err == nil {
					t.Fatalf("%s: Enqueue on a killed connection returned nil", kind)
				}
				if n := e.scalar("SELECT count(*) FROM "+e.b.QueueTable()+" WHERE dedupe_key = $1", key); n != 0 {
					t.Errorf("%s: %d queue rows with the key after the killed enqueue", kind, n)
				}
				if n := e.scalar("SELECT count(*) FROM " + e.b.LogTable()); n != logRows {
					t.Errorf("%s: the killed enqueue changed the log: %d rows, was %d", kind, n, logRows)
				}
			}()

			func() { // connections killed at random under load
				const n = 300
				app := "jwrel-chaos-" + pgtest.UniqueName()
				writer := e.another(app, 6)
				ids := e.enqueue(n, "chaos")
				ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
				defer cancel()
				all := make(chan []statemachine.State, 1)
				allErr := make(chan error, 1)
				go func() {
					sts, err := w.WaitAll(ctx, ids)
					all <- sts
					allErr <- err
				}()

				stop := make(chan struct{})
				var kills, failures, successes atomic.Int64
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { // the killer
					defer wg.Done()
					for {
						d := time.Duration(10+rand.IntN(30)) * time.Millisecond
						select {
						case <-stop:
							return
						case <-time.After(d):
						}
						var k int64
						if err := e.admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
							app).Scan(&k); err == nil {
							kills.Add(k)
						}
					}
				}()
				events := []statemachine.Event{statemachine.Complete, statemachine.Error, statemachine.Cancel,
					statemachine.Hold, statemachine.Retry}
				for range 4 {
					wg.Add(1)
					go func() { // a worker
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							jobs, err := writer.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{"chaos"}, Limit: 5})
							if err != nil {
								failures.Add(1)
								continue
							}
							for _, j := range jobs {
								if err := writer.Apply(ctx, events[rand.IntN(len(events))], j.ID); err != nil {
									failures.Add(1)
								} else {
									successes.Add(1)
								}
							}
						}
					}()
				}
				timer := time.NewTimer(2 * time.Second)
				<-timer.C
				close(stop)
				wg.Wait()
				t.Logf("%s: %d connections killed, %d writes failed, %d transitions succeeded", kind, kills.Load(), failures.Load(), successes.Load())
				if kills.Load() == 0 || failures.Load() == 0 || successes.Load() == 0 {
					t.Errorf("%s: the chaos did not bite (kills %d, failures %d, successes %d)", kind, kills.Load(), failures.Load(), successes.Load())
				}
				check("after random kills", ids...)

				// Finish every job cleanly; the waiter sees every outcome.
				for _, id := range ids {
					for step := 0; step < 5; step++ {
						var st string
						err := e.admin.QueryRow(ctx, "SELECT status::text FROM "+e.b.QueueTable()+" WHERE id = $1", int64(id)).Scan(&st)
						if err != nil { // no queue row: terminal
							break
						}
						ev := map[string]statemachine.Event{"queued": statemachine.Claim, "picked": statemachine.Complete,
							"failed": statemachine.Delete}[st]
						if err := e.b.Apply(ctx, ev, id); err != nil {
							t.Fatalf("%s: finishing job %d (%s): %v", kind, id, st, err)
						}
					}
				}
				recs := check("after finishing", ids...)
				sts := stressRecv(t, all, 30*time.Second, "WaitAll of the chaos jobs")
				if err := <-allErr; err != nil {
					t.Fatalf("%s: WaitAll: %v", kind, err)
				}
				for i, id := range ids {
					log := recs[id].log
					if want := log[len(log)-1]; sts[i].String() != want {
						t.Errorf("%s: WaitAll says job %d is %v; its newest log row says %s", kind, id, sts[i], want)
					}
				}
			}()
		})
	}
}
