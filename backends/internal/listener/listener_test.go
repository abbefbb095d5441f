package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errClosed    = errors.New("test: subscription closed")
	errUnhealthy = errors.New("test: unhealthy")
	errAborted   = errors.New("test: socket closed")
)

// fakeConn is a scripted listening connection.
type fakeConn struct {
	events    chan Event
	fail      chan error    // Receive returns what arrives here, and the conn is unusable
	ignoreCtx bool          // Receive ignores ctx (only Abort ends it)
	stuck     chan struct{} // if non-nil, an aborted Receive blocks until it is closed
	pingErr   error

	aborted   chan struct{}
	abortOnce sync.Once
	unusable  atomic.Bool
	closes    atomic.Int32
	receiving chan struct{} // gets a value each time Receive starts
}

func newFakeConn() *fakeConn {
	return &fakeConn{
		events:    make(chan Event, 16),
		fail:      make(chan error, 1),
		aborted:   make(chan struct{}),
		receiving: make(chan struct{}, 64),
	}
}

func (c *fakeConn) Receive(ctx context.Context) (Event, error) {
	select {
	case c.receiving <- struct{}{}:
	default:
	}
	done := ctx.Done()
	if c.ignoreCtx {
		done = nil
	}
	select {
	case ev := <-c.events:
		return ev, nil
	case err := <-c.fail:
		c.unusable.Store(true)
		return Activity, err
	case <-done:
		return Activity, ctx.Err()
	case <-c.aborted:
		if c.stuck != nil {
			<-c.stuck
		}
		c.unusable.Store(true)
		return Activity, errAborted
	}
}

func (c *fakeConn) Usable() bool { return !c.unusable.Load() }

func (c *fakeConn) Ping(ctx context.Context) error {
	if c.pingErr != nil {
		return c.pingErr
	}
	return ctx.Err()
}

func (c *fakeConn) Abort() { c.abortOnce.Do(func() { close(c.aborted) }) }

func (c *fakeConn) Close() error {
	c.closes.Add(1)
	return nil
}

type probes struct {
	mu       sync.Mutex
	payloads []string
	err      error
}

func (p *probes) send(ctx context.Context, payload string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.payloads = append(p.payloads, payload)
	if p.err != nil {
		return p.err
	}
	return ctx.Err()
}

func (p *probes) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.payloads)
}

func newSub(t *testing.T, c *fakeConn, health time.Duration, edit func(*Config)) (*Sub, *probes) {
	t.Helper()
	p := &probes{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{
		Prefix:       "test",
		Log:          log,
		Health:       health,
		Probe:        p.send,
		Filter:       NewFilter("chan", "queue", log, "test"),
		ErrClosed:    errClosed,
		ErrUnhealthy: errUnhealthy,
		Dead:         func(err error) error { return errors.Join(errors.New("test: dead"), err) },
		CloseGrace:   50 * time.Millisecond,
		CloseTimeout: 50 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	s := New(c, cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s, p
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestFilterClassify(t *testing.T) {
	f := NewFilter("chan", "queue", slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	own := f.newProbe()
	tests := []struct {
		name, channel, payload string
		want                   Event
		ignored                bool
	}{
		{"change of the queue", "chan", `{"type":"table_changed_event","table":"queue"}`, Hint, false},
		{"change naming no table", "chan", `{"type":"table_changed_event"}`, Hint, false},
		{"another table", "chan", `{"type":"table_changed_event","table":"other"}`, Activity, true},
		{"other channel", "other", `{"type":"table_changed_event","table":"queue"}`, Activity, true},
		{"garbage", "chan", "not json", Activity, true},
		{"other event type", "chan", `{"type":"requests_per_second_event"}`, Activity, true},
		{"own probe", "chan", own, Activity, false},
		{"own probe again (already seen)", "chan", own, Activity, true},
		{"someone else's probe", "chan", `{"type":"health_check_event","id":"x"}`, Activity, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.Ignored()
			if got := f.Classify(tt.channel, tt.payload); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
			}
			if got := f.Ignored() - before; got != map[bool]uint64{true: 1}[tt.ignored] {
				t.Errorf("Ignored grew by %d, want ignored=%v", got, tt.ignored)
			}
		})
	}
}

func TestFilterForgetsOldProbes(t *testing.T) {
	f := NewFilter("chan", "queue", slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	first := f.newProbe()
	for range maxProbes {
		f.newProbe()
	}
	if f.Classify("chan", first); f.Ignored() != 1 {
		t.Errorf("a probe older than the last %d is still recognised as ours", maxProbes)
	}
}

func TestNextDelivers(t *testing.T) {
	c := newFakeConn()
	s, _ := newSub(t, c, 0, nil)
	c.events <- Activity
	c.events <- Hint
	c.events <- Resync
	for _, want := range []bool{false, true} {
		n, err := s.Next(ctxFor(t, 5*time.Second))
		if err != nil || n.Resync != want {
			t.Fatalf("Next = %+v, %v; want Resync=%v", n, err, want)
		}
	}
}

// A Next whose ctx ends leaves the subscription usable.
func TestCtxEndLeavesUsable(t *testing.T) {
	c := newFakeConn()
	s, _ := newSub(t, c, 0, nil)
	if _, err := s.Next(ctxFor(t, 10*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want DeadlineExceeded", err)
	}
	c.events <- Hint
	if _, err := s.Next(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Next after a timed-out Next = %v, want the hint", err)
	}
}

// A half-open connection: the probe is sent, nothing comes back.
func TestHalfOpenDetected(t *testing.T) {
	c := newFakeConn()
	s, p := newSub(t, c, 20*time.Millisecond, nil)
	_, err := s.Next(ctxFor(t, 5*time.Second))
	if !errors.Is(err, errUnhealthy) || !strings.Contains(err.Error(), "probe not received") {
		t.Fatalf("Next = %v, want unhealthy, probe not received", err)
	}
	if p.count() != 1 {
		t.Errorf("%d probes sent, want 1", p.count())
	}
	if _, err2 := s.Next(ctxFor(t, time.Second)); !errors.Is(err2, errUnhealthy) {
		t.Errorf("Next on a dead subscription = %v, want its error again", err2)
	}
	if c.closes.Load() != 1 {
		t.Errorf("the failed connection was closed %d times, want 1 (at once)", c.closes.Load())
	}
}

// Traffic after the probe proves the connection alive; a hint that comes
// is delivered.
func TestProbeAnswered(t *testing.T) {
	c := newFakeConn()
	s, p := newSub(t, c, 20*time.Millisecond, func(cfg *Config) {
		probe := cfg.Probe
		cfg.Probe = func(ctx context.Context, payload string) error {
			c.events <- Hint // what arrives first after the probe
			return probe(ctx, payload)
		}
	})
	if _, err := s.Next(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Next = %v, want the hint that arrived after the probe", err)
	}
	if p.count() != 1 {
		t.Errorf("%d probes sent, want 1", p.count())
	}
}

func TestProbeNotSentFallsBackToPing(t *testing.T) {
	tests := []struct {
		name    string
		pingErr error
		wantErr error
	}{
		{"ping answers", nil, context.DeadlineExceeded},
		{"ping fails", errors.New("no route"), errUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeConn()
			c.pingErr = tt.pingErr
			s, p := newSub(t, c, 10*time.Millisecond, nil)
			p.err = errors.New("pool exhausted")
			_, err := s.Next(ctxFor(t, 200*time.Millisecond))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A probe whose send timed out may still have notified: when it arrives
// later it is ours, not a foreign notification to count as ignored.
func TestLateProbeAfterFailedSendIsOurs(t *testing.T) {
	c := newFakeConn()
	var f *Filter
	s, p := newSub(t, c, 10*time.Millisecond, func(cfg *Config) { f = cfg.Filter })
	p.err = context.DeadlineExceeded // the send gave up; the server may have notified anyway
	_, _ = s.Next(ctxFor(t, 100*time.Millisecond))
	p.mu.Lock()
	sent := slices.Clone(p.payloads)
	p.mu.Unlock()
	if len(sent) == 0 {
		t.Fatal("no probe was sent")
	}
	// The latest one: older ones may have been dropped to bound the set.
	if ev := f.Classify("chan", sent[len(sent)-1]); ev != Activity {
		t.Errorf("late probe classified %v, want Activity", ev)
	}
	if n := f.Ignored(); n != 0 {
		t.Errorf("a late probe counted as ignored")
	}
}

// Close wins over a probe in flight: once Close has begun, Next returns
// ErrClosed, whatever the probe finds.
func TestCloseWinsOverProbeInFlight(t *testing.T) {
	for _, failProbe := range []bool{true, false} {
		c := newFakeConn()
		probing := make(chan struct{})
		s, _ := newSub(t, c, 5*time.Millisecond, func(cfg *Config) {
			cfg.BeforeProbe = func(ctx context.Context) error {
				close(probing)
				<-ctx.Done() // cancelled as Close begins
				if failProbe {
					return errors.New("probe lost")
				}
				return nil
			}
		})
		done := make(chan error, 1)
		go func() {
			_, err := s.Next(context.Background())
			done <- err
		}()
		<-probing
		if err := s.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if err := <-done; !errors.Is(err, errClosed) {
			t.Errorf("failProbe=%v: Next = %v, want ErrClosed", failProbe, err)
		}
	}
}

// Close interrupts a blocked Next, and Next after Close fails at once.
func TestCloseEndsNext(t *testing.T) {
	c := newFakeConn()
	var onClose atomic.Int32
	s, _ := newSub(t, c, 0, func(cfg *Config) { cfg.OnClose = func() { onClose.Add(1) } })
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	<-c.receiving
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		}()
	}
	wg.Wait()
	if err := <-done; !errors.Is(err, errClosed) {
		t.Errorf("Next = %v, want ErrClosed", err)
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if n := c.closes.Load(); n != 1 {
		t.Errorf("conn closed %d times, want 1", n)
	}
	if n := onClose.Load(); n != 1 {
		t.Errorf("OnClose ran %d times, want 1", n)
	}
}

// A Next that ignores the cancel is cut off by Abort after the grace.
func TestCloseAbortsStuckNext(t *testing.T) {
	c := newFakeConn()
	c.ignoreCtx = true
	s, _ := newSub(t, c, 0, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	<-c.receiving
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %s", el)
	}
	if err := <-done; !errors.Is(err, errClosed) {
		t.Errorf("Next = %v, want ErrClosed", err)
	}
	if c.closes.Load() != 1 {
		t.Errorf("conn closed %d times, want 1", c.closes.Load())
	}
}

// A Next that does not return even after Abort: Close still returns, with
// ErrStuck, and does not touch the connection under it.
func TestCloseBoundedWhenNextNeverLetsGo(t *testing.T) {
	c := newFakeConn()
	c.ignoreCtx = true
	c.stuck = make(chan struct{})
	s, _ := newSub(t, c, 0, nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		done <- err
	}()
	<-c.receiving
	if err := s.Close(); !errors.Is(err, ErrStuck) {
		t.Errorf("Close = %v, want ErrStuck", err)
	}
	if err := s.Close(); !errors.Is(err, ErrStuck) {
		t.Errorf("second Close = %v, want the first one's ErrStuck", err)
	}
	if c.closes.Load() != 0 {
		t.Errorf("conn closed while Next still used it")
	}
	close(c.stuck)
	<-done
}

// A failed connection kills the subscription; Close afterwards still
// returns ErrClosed from Next.
func TestConnFailureKills(t *testing.T) {
	c := newFakeConn()
	s, _ := newSub(t, c, 0, nil)
	c.fail <- errors.New("connection reset")
	_, err := s.Next(ctxFor(t, 5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "test: dead") || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Next = %v, want the Dead-formatted connection error", err)
	}
	_ = s.Close()
	if _, err := s.Next(ctxFor(t, time.Second)); !errors.Is(err, errClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
}
