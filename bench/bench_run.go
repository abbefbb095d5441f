package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/statemachine"
)

// enqueueChunk is how many jobs one Enqueue (and one Claim) carries while
// the bench sets jobs up.
const enqueueChunk = 5000

// setupTimeout bounds each wait for the bench's own setup (a watcher
// listening, a registration read), so a broken backend fails the run
// instead of hanging it.
const setupTimeout = 2 * time.Minute

// waitUntil polls cond every millisecond until it holds, ctx is done or
// timeout (if positive) passes. The bench polls Stats: registration and
// reads send no signal.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out waiting for %s", what)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// newWatcher returns a Watcher over the measured backend, its reads timed
// by the returned clock, once it listens.
func (b *bench) newWatcher(ctx context.Context, opts ...jobwatch.Option) (*jobwatch.Watcher, *dbClock, error) {
	clock := &dbClock{}
	w, err := jobwatch.New(timed(b.mq, clock), opts...)
	if err != nil {
		return nil, nil, err
	}
	if err := waitUntil(ctx, setupTimeout, "the watcher to listen", func() bool { return w.Stats().Listening }); err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, clock, nil
}

// prepare enqueues n jobs and claims them, through the workers' pool, and
// returns their ids in order. The jobs are picked: one Complete each ends
// them.
func (b *bench) prepare(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]jwpgx.NewJob, min(n, enqueueChunk))
	for i := range jobs {
		jobs[i] = jwpgx.NewJob{Entrypoint: "bench"}
	}
	ids := make([]jobwatch.JobID, 0, n)
	for len(ids) < n {
		got, err := b.workers.Enqueue(ctx, jobs[:min(len(jobs), n-len(ids))]...)
		if err != nil {
			return nil, err
		}
		if err := b.workers.Apply(ctx, statemachine.Claim, got...); err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	if n >= 1000 {
		// Dead rows vacuumed and statistics fresh, as autovacuum keeps a
		// long-running queue, whether or not it runs on this server.
		if err := b.m.exec(ctx, "VACUUM (ANALYZE) "+b.mq.QueueTable()+", "+b.mq.LogTable()); err != nil {
			return nil, err
		}
		b.checkpoint(ctx)
	}
	return ids, nil
}

// checkpoint writes out the dirty buffers of the setup's bulk writes, so
// that the timed phase after it does not pay for them (or for a
// checkpoint that happens to start). It needs superuser or pg_checkpoint;
// without them the bench runs on, only noisier.
func (b *bench) checkpoint(ctx context.Context) {
	if err := b.m.exec(ctx, "CHECKPOINT"); err != nil && ctx.Err() == nil && !b.noCheckpoint {
		b.noCheckpoint = true
		b.logf("note: CHECKPOINT refused (%v); timings after bulk writes may be noisier", err)
	}
}

// warmPool brings every connection of the measured pool to the steady
// state of a long-running service before a timed phase: statements
// prepared (pgx), past PostgreSQL's first five custom-planned executions,
// and the log's index in shared buffers. Each of the pool's connections
// runs the status read of ids (up to one read batch) a few times,
// concurrently so that they are distinct connections. Nothing is timed.
func (b *bench) warmPool(ctx context.Context, ids []jobwatch.JobID) error {
	ids = ids[:min(len(ids), jobwatch.DefaultBatchSize)]
	errs := make(chan error, b.cfg.pool)
	for range b.cfg.pool {
		go func() {
			for range 8 {
				if _, err := b.mq.FetchStatuses(ctx, ids); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range b.cfg.pool {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// completeAll completes ids in transactions of the batch size, one after
// the other, through the workers' pool, recording when each commit
// returned in commitAt (one slot per batch).
func (b *bench) completeAll(ctx context.Context, ids []jobwatch.JobID, commitAt []time.Time) error {
	for k := 0; k*b.cfg.batch < len(ids); k++ {
		batch := ids[k*b.cfg.batch : min((k+1)*b.cfg.batch, len(ids))]
		if err := b.workers.Apply(ctx, statemachine.Complete, batch...); err != nil {
			return err
		}
		if commitAt != nil {
			commitAt[k] = time.Now()
		}
	}
	return nil
}

func (b *bench) batches(n int) int { return (n + b.cfg.batch - 1) / b.cfg.batch }

// latencies returns, for each job seen settled, the time from its batch's
// commit to when it was seen, in milliseconds.
func (b *bench) latencies(seen, commitAt []time.Time) []float64 {
	out := make([]float64, 0, len(seen))
	for i, at := range seen {
		commit := commitAt[i/b.cfg.batch]
		if at.IsZero() || commit.IsZero() {
			continue
		}
		out = append(out, ms(nonNegative(at.Sub(commit))))
	}
	return out
}

func latest(ts []time.Time) time.Time {
	var t time.Time
	for _, x := range ts {
		if x.After(t) {
			t = x
		}
	}
	return t
}

// memSnapshot is the live heap and the goroutine stacks, after a GC.
type memSnapshot struct{ heap, stack int64 }

func liveMemory() memSnapshot {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSnapshot{int64(m.HeapAlloc), int64(m.StackInuse)}
}

func memoryPerWaiter(series string, n int, before, after memSnapshot, capped bool) memoryRow {
	heap := float64(after.heap-before.heap) / float64(n)
	stack := float64(after.stack-before.stack) / float64(n)
	return memoryRow{Series: series, Waiters: n, HeapBytesPerWaiter: heap, StackBytesPerWaiter: stack,
		BytesPerWaiter: heap + stack, Capped: capped}
}

func perJobUS(d time.Duration, jobs int) float64 {
	if jobs == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(jobs)
}

func perSecond(n int, d time.Duration) float64 {
	if n == 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// machine describes where the bench runs.
func (b *bench) machine(ctx context.Context) (machineInfo, error) {
	mi := machineInfo{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	mi.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		if n, err := strconv.ParseUint(strings.TrimSuffix(kb, " kB"), 10, 64); err == nil {
			mi.MemoryBytes = n * 1024
		}
	}
	v, err := b.m.text(ctx, "SELECT version()")
	if err != nil {
		return mi, err
	}
	mi.PostgreSQL = v
	return mi, nil
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "" where there is none (not Linux).
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// floor measures one NOTIFY round trip (pg_notify from the pool, received
// on a dedicated LISTEN connection) and one indexed status read.
func (b *bench) floor(ctx context.Context) (floorResult, error) {
	n := b.cfg.floorSamples
	b.logf("floor: %d NOTIFY round trips and %d one-id status reads", n, n)
	channel := b.cfg.conn.prefix + "floor"
	l, err := b.m.listenRaw(ctx, channel)
	if err != nil {
		return floorResult{}, err
	}
	defer l.close()
	const warmup = 10
	rtt := make([]float64, 0, n)
	for i := range n + warmup {
		start := time.Now()
		if err := b.m.notify(ctx, channel, "bench"); err != nil {
			return floorResult{}, err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.receive(rctx)
		cancel()
		if err != nil {
			return floorResult{}, fmt.Errorf("notify round trip: %w", err)
		}
		if i >= warmup {
			rtt = append(rtt, ms(time.Since(start)))
		}
	}
	ids, err := b.prepare(ctx, 1)
	if err != nil {
		return floorResult{}, err
	}
	reads := make([]float64, 0, n)
	for i := range n + warmup {
		start := time.Now()
		st, err := b.mq.FetchStatuses(ctx, ids)
		if err != nil {
			return floorResult{}, err
		}
		if len(st) != 1 {
			return floorResult{}, fmt.Errorf("status read of job %d returned %d rows", ids[0], len(st))
		}
		if i >= warmup {
			reads = append(reads, ms(time.Since(start)))
		}
	}
	f := floorResult{NotifyRoundTrip: summarize(rtt), StatusRead: summarize(reads)}
	f.FloorMS = f.NotifyRoundTrip.P50 + f.StatusRead.P50
	b.logf("floor: NOTIFY round trip p50 %s ms, status read p50 %s ms", fmtMS(f.NotifyRoundTrip.P50), fmtMS(f.StatusRead.P50))
	return f, nil
}

// latencyVariant is one jobwatch configuration of the latency runs.
type latencyVariant struct {
	series string
	opts   []jobwatch.Option
}

// latencyVariants are the jobwatch series of the latency runs at debounce:
// the default configuration (with few waiters it reads them by id, not
// from the feed), the same without the feed, and, at debounce 0, the feed
// forced by a threshold of 0, to show the change feed's own cost.
func latencyVariants(debounce time.Duration) []latencyVariant {
	vs := []latencyVariant{
		{seriesFeed, []jobwatch.Option{jobwatch.WithChangeFeed(true)}},
		{seriesNoFeed, []jobwatch.Option{jobwatch.WithChangeFeed(false)}},
	}
	if debounce == 0 {
		vs = append(vs, latencyVariant{seriesFeedForced, []jobwatch.Option{jobwatch.WithChangeFeed(true), jobwatch.WithFeedThreshold(0)}})
	}
	return vs
}

// latency measures commit-to-return with one waiter at a time: jobwatch
// with and without the feed, at debounce 0 and the default, the feed
// forced at debounce 0, and the polling baseline.
func (b *bench) latency(ctx context.Context) ([]latencyRow, error) {
	var rows []latencyRow
	for _, debounce := range []time.Duration{0, jobwatch.DefaultDebounce} {
		for _, v := range latencyVariants(debounce) {
			b.logf("latency: %s, debounce %s, %d samples", v.series, debounce, b.cfg.samples)
			row, err := b.latencyJobwatch(ctx, v, debounce)
			if err != nil {
				return nil, fmt.Errorf("latency, %s: %w", v.series, err)
			}
			b.logf("latency: %s, debounce %s: p50 %s ms, p99 %s ms, %.2f reads per wait",
				v.series, debounce, fmtMS(row.Latency.P50), fmtMS(row.Latency.P99), row.ReadsPerSample)
			rows = append(rows, row)
		}
	}
	b.logf("latency: %s, poll every %s, %d samples", seriesBaseline, b.cfg.pollInterval, b.cfg.samples)
	d, err := b.latencyBaseline(ctx)
	if err != nil {
		return nil, fmt.Errorf("latency, %s: %w", seriesBaseline, err)
	}
	b.logf("latency: %s: p50 %s ms, p99 %s ms", seriesBaseline, fmtMS(d.P50), fmtMS(d.P99))
	rows = append(rows, latencyRow{Series: seriesBaseline, DebounceMS: ms(b.cfg.pollInterval), Latency: d,
		ReadsPerSample: math.NaN(), DBMSPerSample: math.NaN()})
	return rows, nil
}

func seriesName(feed bool) string {
	if feed {
		return seriesFeed
	}
	return seriesNoFeed
}

// latencyJobwatch: for each sample, a Wait on a picked job; once the wait's
// own first read is done, the job completes; latency runs from the
// completing call's return to Wait's.
func (b *bench) latencyJobwatch(ctx context.Context, v latencyVariant, debounce time.Duration) (latencyRow, error) {
	row := latencyRow{Series: v.series, DebounceMS: ms(debounce)}
	ids, err := b.prepare(ctx, b.cfg.samples)
	if err != nil {
		return row, err
	}
	w, clock, err := b.newWatcher(ctx, append([]jobwatch.Option{jobwatch.WithDebounce(debounce)}, v.opts...)...)
	if err != nil {
		return row, err
	}
	defer w.Close()
	var hotReads, partial uint64
	var hotDB time.Duration
	type result struct {
		at    time.Time
		state statemachine.State
		err   error
	}
	lat := make([]float64, 0, len(ids))
	for _, id := range ids {
		before := w.Stats().IDsRead
		res := make(chan result, 1)
		go func() {
			st, err := w.Wait(ctx, id)
			res <- result{time.Now(), st, err}
		}()
		err := waitUntil(ctx, setupTimeout, "the wait's first read", func() bool {
			s := w.Stats()
			return s.Pending == 1 && s.IDsRead > before
		})
		if err != nil {
			return row, err
		}
		calls0, db0 := clock.snapshot()
		partial0 := clock.partial.Load()
		if err := b.workers.Apply(ctx, statemachine.Complete, id); err != nil {
			return row, err
		}
		t0 := time.Now()
		var r result
		select {
		case r = <-res:
		case <-ctx.Done():
			return row, ctx.Err()
		}
		if r.err != nil {
			return row, r.err
		}
		if r.state != statemachine.Successful {
			return row, fmt.Errorf("job %d settled %s, want successful", id, r.state)
		}
		lat = append(lat, ms(nonNegative(r.at.Sub(t0))))
		calls1, db1 := clock.snapshot()
		hotReads += calls1 - calls0
		hotDB += db1 - db0
		partial += clock.partial.Load() - partial0
	}
	row.Latency = summarize(lat)
	row.ReadsPerSample = float64(hotReads) / float64(len(ids))
	row.DBMSPerSample = ms(hotDB) / float64(len(ids))
	row.PartialChangeSets = partial
	return row, nil
}
