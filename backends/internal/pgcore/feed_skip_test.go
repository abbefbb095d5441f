package pgcore_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/internal/pgtest"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// watch returns a Watcher on e's backend that serves every notification
// from the change feed, with a poll too slow to matter to a test.
func (e *env) watch(opts ...jobwatch.Option) *jobwatch.Watcher {
	e.t.Helper()
	w, err := jobwatch.New(e.b, append([]jobwatch.Option{
		jobwatch.WithFeedThreshold(0),
		jobwatch.WithRefreshInterval(time.Minute),
		jobwatch.WithFullReadInterval(time.Hour),
		jobwatch.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		jobwatch.WithDebounce(time.Millisecond),
	}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = w.Close() })
	return w
}

// waitFor polls w's Stats until ok holds (the Watcher has no signal for
// its internal reads), failing at the test's deadline.
func (e *env) waitFor(w *jobwatch.Watcher, what string, ok func(jobwatch.Stats) bool) {
	e.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ok(w.Stats()) {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("%s: never happened; stats %+v", what, w.Stats())
		case <-tick.C:
		}
	}
}

// waitAsync starts w.Wait(id) and returns its outcome's channel.
func (e *env) waitAsync(w *jobwatch.Watcher, id jobwatch.JobID) <-chan statemachine.State {
	out := make(chan statemachine.State, 1)
	go func() {
		st, err := w.Wait(e.ctx, id)
		if err != nil {
			e.t.Errorf("Wait(%d): %v", id, err)
		}
		out <- st
	}()
	return out
}

func jobNew() queue.NewJob { return queue.NewJob{Entrypoint: "test"} }

// finish completes id through the backend's own write path, which notifies.
func (e *env) finish(id jobwatch.JobID) {
	e.t.Helper()
	pgtest.Bring(e.t, e.ctx, e.b, id, statemachine.Successful)
}

// archive adds 'archived' to the status enum, as a newer PgQueuer might,
// and gives job a log row with it, written by SQL jobwatch does not know.
func (e *env) archive(job int64) {
	e.t.Helper()
	if _, err := e.pool.Exec(e.ctx, "ALTER TYPE "+e.names.Qualify(e.names.StatusType)+" ADD VALUE IF NOT EXISTS 'archived'"); err != nil {
		e.t.Fatal(err)
	}
	x := e.begin()
	x.logRow(job, "archived")
	x.end(true)
}

// A row whose status the feed cannot parse is skipped, counted and moved
// past; the good rows around it still arrive.
func TestFeedSkipsUnparseableRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, pgtest.DSN())
		f := e.start()
		x := e.begin()
		x.logRow(1, "successful")
		x.end(true)
		e.archive(2)
		x = e.begin()
		x.logRow(3, "successful")
		x.logRow(2, "archived") // a second bad row of the same job
		x.end(true)
		cs, err := e.b.Changes(e.ctx, f.cur)
		if err != nil {
			t.Fatalf("Changes with a bad row: %v", err)
		}
		if len(cs.Statuses) != 2 || cs.Statuses[0].ID != 1 || cs.Statuses[1].ID != 3 || cs.Skipped != 2 {
			t.Fatalf("Changes = %v, skipped %d; want jobs 1 and 3, job 2's two rows skipped", cs.Statuses, cs.Skipped)
		}
		x = e.begin()
		x.logRow(4, "successful")
		x.end(true)
		cs, err = e.b.Changes(e.ctx, cs.Cursor)
		if err != nil || len(cs.Statuses) != 1 || cs.Statuses[0].ID != 4 || cs.Skipped != 0 {
			t.Fatalf("next Changes = %v, skipped %d, %v; want job 4 alone, the bad row behind", cs.Statuses, cs.Skipped, err)
		}
	})
}

// A Watcher waiting on one job is not held up by a bad row of another
// that nobody waits on: the feed skips it, and the Watcher counts it.
func TestWatcherPastUnparseableRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, pgtest.DSN())
		ids, err := e.b.Enqueue(e.ctx, jobNew(), jobNew())
		if err != nil {
			t.Fatal(err)
		}
		w := e.watch()
		done := e.waitAsync(w, ids[0])
		e.waitFor(w, "the feed's start", func(s jobwatch.Stats) bool { return s.FeedReads > 0 && s.Listening })
		e.archive(int64(ids[1]))
		e.finish(ids[0])
		if st := <-done; st != statemachine.Successful {
			t.Fatalf("Wait = %v, want successful", st)
		}
		e.waitFor(w, "the skip counted", func(s jobwatch.Stats) bool { return s.SkippedChanges == 1 })
		if s := w.Stats(); s.FeedReadErrors != 0 || s.MissedChanges != 0 {
			t.Fatalf("stats %+v: want no feed error, no missed change", s)
		}
	})
}

// While the feed's query fails (the proxy below replaces it with one the
// server refuses) and reads by id work, a wait still resolves; once the
// query works again the feed is retried and serves the next wait.
func TestWatcherThroughFailingFeed(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, kind string) {
		p := newBreaker(t)
		p.broken.Store(true)
		e := newEnv(t, kind, p.dsn)
		ids, err := e.b.Enqueue(e.ctx, jobNew(), jobNew())
		if err != nil {
			t.Fatal(err)
		}
		w := e.watch()
		done := e.waitAsync(w, ids[0])
		e.waitFor(w, "a failed feed read", func(s jobwatch.Stats) bool { return s.FeedReadErrors > 0 && s.Listening })
		e.finish(ids[0])
		if st := <-done; st != statemachine.Successful {
			t.Fatalf("Wait with the feed failing = %v, want successful", st)
		}
		if p.rewritten.Load() == 0 {
			t.Fatal("the proxy rewrote no feed query: the test tested nothing")
		}
		p.broken.Store(false)
		done = e.waitAsync(w, ids[1])
		e.waitFor(w, "a feed read that worked", func(s jobwatch.Stats) bool { return s.FeedReads > s.FeedReadErrors })
		before := w.Stats()
		e.finish(ids[1])
		if st := <-done; st != statemachine.Successful {
			t.Fatalf("Wait with the feed back = %v, want successful", st)
		}
		e.waitFor(w, "the feed serving the change", func(s jobwatch.Stats) bool { return s.ChangesRead > before.ChangesRead })
		if s := w.Stats(); s.FeedReadErrors != before.FeedReadErrors {
			t.Fatalf("feed errors went from %d to %d after the query was let through", before.FeedReadErrors, s.FeedReadErrors)
		}
	})
}

// breaker is a TCP proxy to the test database that, while broken, swaps
// the text of every query naming pg_locks (the change feed's, and no
// other) for one calling a function that does not exist, so the server
// fails that query alone and the connection goes on.
type breaker struct {
	dsn       string
	broken    atomic.Bool
	rewritten atomic.Int64
	ln        net.Listener
	target    string
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []net.Conn
}

const (
	feedMarker  = "pg_locks"
	refusedText = "SELECT pg_catalog.jobwatch_test_feed_refused()"
)

func newBreaker(t *testing.T) *breaker {
	t.Helper()
	u, err := url.Parse(pgtest.DSN())
	if err != nil || u.Host == "" {
		t.Fatalf("the breaker needs a URL DSN with a host: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &breaker{ln: ln, target: u.Host}
	if u.Port() == "" {
		b.target = net.JoinHostPort(u.Hostname(), "5432")
	}
	u.Host = ln.Addr().String()
	b.dsn = u.String()
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *breaker) accept() {
	defer b.wg.Done()
	for {
		client, err := b.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", b.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, client, server)
		b.mu.Unlock()
		b.wg.Add(2)
		go func() {
			defer b.wg.Done()
			_, _ = io.Copy(client, server)
			_ = client.Close()
		}()
		go func() {
			defer b.wg.Done()
			_ = b.forward(server, client)
			_ = server.Close()
		}()
	}
}

// forward copies the client's messages to the server, rewriting feed
// queries while broken. Startup-format messages (SSL request, startup)
// come first and pass as they are.
func (b *breaker) forward(dst io.Writer, src io.Reader) error {
	var head [4]byte
	for {
		if _, err := io.ReadFull(src, head[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(head[:])-4)
		if _, err := io.ReadFull(src, body); err != nil {
			return err
		}
		if _, err := dst.Write(append(head[:], body...)); err != nil {
			return err
		}
		if len(body) >= 4 && binary.BigEndian.Uint32(body) == 3<<16 { // protocol 3.0: the startup message
			break
		}
	}
	var typ [5]byte
	for {
		if _, err := io.ReadFull(src, typ[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(typ[1:])-4)
		if _, err := io.ReadFull(src, body); err != nil {
			return err
		}
		if b.broken.Load() && (typ[0] == 'P' || typ[0] == 'Q') && bytes.Contains(body, []byte(feedMarker)) {
			body = refuse(typ[0], body)
			b.rewritten.Add(1)
		}
		binary.BigEndian.PutUint32(typ[1:], uint32(len(body)+4))
		if _, err := dst.Write(append(typ[:], body...)); err != nil {
			return err
		}
	}
}

// refuse replaces the query text of a Parse ('P': name, query, parameter
// types) or Query ('Q': query) message body.
func refuse(typ byte, body []byte) []byte {
	var name []byte
	if typ == 'P' {
		i := bytes.IndexByte(body, 0)
		name, body = body[:i+1], body[i+1:]
	}
	rest := body[bytes.IndexByte(body, 0)+1:]
	out := append(append([]byte{}, name...), refusedText...)
	return append(append(out, 0), rest...)
}
