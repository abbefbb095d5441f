package pgcore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobwatch/jobwatch/backends/internal/pgcore"
	"github.com/jobwatch/jobwatch/internal/pgtest"
)

// EnvFeedSeed names the variable that sets TestFeedProperty's seed, to
// replay a failure (the test logs the seed it used).
const EnvFeedSeed = "JOBWATCH_FEED_SEED"

// TestFeedProperty: concurrent writers interleave every order of xid
// assignment, id assignment and commit: a transaction may take its xid
// before its ids, or an id (nextval) long before its xid and row, hold the
// transaction open, commit or roll back. A feed read in a loop meanwhile
// must, once every writer has ended, have returned exactly the committed
// rows past its start, and never have been partial (it vouched all along).
// Each row has a job of its own, so the feed's statuses name its rows.
// The seed fixes every writer's choices; how they interleave is up to the
// scheduler and the server, so a replay repeats the workload, not the
// exact schedule.
func TestFeedProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(EnvFeedSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvFeedSeed, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (set %s to replay)", seed, EnvFeedSeed)
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	forEachBackend(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, pgtest.DSN())
		f := e.start()
		var (
			wg      sync.WaitGroup
			jobs    atomic.Int64
			stop    = make(chan struct{})
			errs    = make(chan error, 16)
			writers = 6
		)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := e.randomTx(r, &jobs); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		seen := map[int64]bool{}
		collect := func() {
			t.Helper()
			got, partial := f.read()
			if partial {
				t.Fatal("the feed turned partial")
			}
			for job := range got {
				seen[job] = true
			}
		}
		deadline := time.After(run)
	loop:
		for {
			select {
			case <-deadline:
				break loop
			case err := <-errs:
				close(stop)
				wg.Wait()
				t.Fatal(err)
			default:
				collect()
			}
		}
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Every writer has ended: the gaps retire, the rows are all in.
		for gaps, _ := pgcore.CursorGaps(f.cur); gaps > 0; gaps, _ = pgcore.CursorGaps(f.cur) {
			collect()
		}
		collect()
		committed := map[int64]bool{}
		rows, err := e.pool.Query(e.ctx, "SELECT job_id FROM "+e.names.LogTable())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var job int64
			if err := rows.Scan(&job); err != nil {
				t.Fatal(err)
			}
			committed[job] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		var missed, extra []int64
		for job := range committed {
			if !seen[job] {
				missed = append(missed, job)
			}
		}
		for job := range seen {
			if !committed[job] {
				extra = append(extra, job)
			}
		}
		slices.Sort(missed)
		slices.Sort(extra)
		t.Logf("%d rows written, %d committed, %d returned", jobs.Load(), len(committed), len(seen))
		if len(committed) == 0 {
			t.Fatal("no row was committed: the test tested nothing")
		}
		if len(missed) > 0 || len(extra) > 0 {
			t.Fatalf("seed %d: the feed missed %d committed rows' jobs %v and returned %d never committed %v",
				seed, len(missed), missed, len(extra), extra)
		}
	})
}

// randomTx runs one writer transaction chosen by r: 1 to 3 log rows, each
// with a fresh job id, in one of the orders of xid and id assignment, held
// open for a while or not, committed or rolled back.
func (e *env) randomTx(r *rand.Rand, jobs *atomic.Int64) error {
	ctx := e.ctx
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	pause := func() {
		switch n := r.IntN(20); {
		case n == 0: // a long transaction
			time.Sleep(time.Duration(50+r.IntN(250)) * time.Millisecond)
		case n < 8:
			time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		}
	}
	if r.IntN(3) == 0 { // xid before any id
		if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
			return err
		}
		pause()
	}
	insert := "INSERT INTO " + e.names.LogTable() + " (job_id, status, priority, entrypoint) VALUES ($1, 'queued', 0, 'p')"
	insertID := "INSERT INTO " + e.names.LogTable() + " (id, job_id, status, priority, entrypoint) VALUES ($2, $1, 'queued', 0, 'p')"
	nextval := "SELECT nextval(pg_get_serial_sequence('" + e.names.LogTable() + "', 'id'))"
	for range 1 + r.IntN(3) {
		job := jobs.Add(1)
		if r.IntN(4) == 0 { // the id first, long before the row gives the transaction its xid
			var id int64
			if err := tx.QueryRow(ctx, nextval).Scan(&id); err != nil {
				return err
			}
			pause()
			pause()
			if _, err := tx.Exec(ctx, insertID, job, id); err != nil {
				return err
			}
		} else if _, err := tx.Exec(ctx, insert, job); err != nil {
			return err
		}
		pause()
	}
	if r.IntN(4) == 0 {
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil && !errors.Is(err, pgx.ErrTxCommitRollback) {
		return err
	}
	return nil
}
