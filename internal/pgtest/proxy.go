package pgtest

import (
	"encoding/binary"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy to the test database. Blackhole makes the
// connections open at that moment silently drop everything in both
// directions while staying open: a half-open connection, as a dead network
// path or a frozen peer leaves it. Connections opened later pass normally.
// StallRows holds query results in the middle, after their first rows.
type Proxy struct {
	ln     net.Listener
	target string
	done   chan struct{} // closed by Close

	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	stall  *rowStall // non-nil while StallRows holds results
	wg     sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	blackholed     atomic.Bool
}

// rowStall is one StallRows: each connection forwards at most rows DataRow
// messages from the server while it lasts, then holds the rest.
type rowStall struct {
	rows      int
	stalled   chan struct{} // closed when a connection first holds
	stallOnce sync.Once
	release   chan struct{}
	endOnce   sync.Once
}

// NewProxy starts a proxy on 127.0.0.1 to the host:port of the test DSN and
// returns it with a DSN that goes through it. It is closed at cleanup.
func NewProxy(t testing.TB) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(DSN())
	if err != nil || u.Host == "" {
		t.Fatalf("pgtest: proxy needs a URL DSN with a host, got %q (%v)", safeDSN(DSN()), err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, done: make(chan struct{}), pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.pairs[pr] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(pr, c, s, nil)
		go p.pipe(pr, s, c, &msgScanner{start: true})
	}
}

// pipe copies src to dst until either fails, discarding what it reads while
// the pair is blackholed. With a scanner (the server's direction), it
// follows the protocol's message boundaries to hold results for StallRows.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn, sc *msgScanner) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pr.blackholed.Load() {
			if werr := p.forward(dst, buf[:n], sc); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// Closing both ends ends the other direction too.
			pr.client.Close()
			pr.server.Close()
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
			return
		}
	}
}

// Blackhole makes every connection open now drop all traffic from here on,
// while staying open. It returns how many connections it affected.
func (p *Proxy) Blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.blackholed.Store(true)
	}
	return len(p.pairs)
}

// forward writes b to dst. With a scanner and a StallRows in effect, it
// writes up to the end of the DataRow that reaches the stall's count, then
// holds the rest until the stall is released or the proxy closed.
func (p *Proxy) forward(dst net.Conn, b []byte, sc *msgScanner) error {
	for len(b) > 0 {
		p.mu.Lock()
		st := p.stall
		p.mu.Unlock()
		if sc == nil || st == nil {
			if sc != nil {
				sc.scan(b, nil, 0)
			}
			_, err := dst.Write(b)
			return err
		}
		k, hold := sc.scan(b, st, st.rows)
		if _, err := dst.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
		if hold {
			st.stallOnce.Do(func() { close(st.stalled) })
			select {
			case <-st.release:
			case <-p.done:
				return net.ErrClosed
			}
		}
	}
	return nil
}

// StallRows makes every connection, from now on, forward at most rows
// DataRow messages (rows of query results) from the server and then hold
// everything the server sends, until release: a result stalled in its
// middle, after its first rows. stalled is closed when a connection first
// holds. Messages without rows (notifications, command results) pass
// until a connection holds. A new StallRows replaces one in effect,
// releasing it. release is idempotent and never blocks.
func (p *Proxy) StallRows(rows int) (stalled <-chan struct{}, release func()) {
	st := &rowStall{rows: max(rows, 1), stalled: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	old := p.stall
	p.stall = st
	p.mu.Unlock()
	if old != nil {
		old.end(p)
	}
	return st.stalled, func() { st.end(p) }
}

func (st *rowStall) end(p *Proxy) {
	st.endOnce.Do(func() {
		p.mu.Lock()
		if p.stall == st {
			p.stall = nil
		}
		p.mu.Unlock()
		close(st.release)
	})
}

// msgScanner follows the message boundaries of the server's side of the
// protocol: a type byte and a big-endian int32 length that counts itself.
// The very first byte may be a lone 'N' or 'S' (the answer to an SSL or
// GSS encryption request); after an 'S' the stream is encrypted and is not
// followed.
type msgScanner struct {
	start  bool // at the start of the stream
	off    bool // encrypted: not followed
	hdr    [5]byte
	nhdr   int  // header bytes seen of the current message
	left   int  // body bytes left of the current message
	isRow  bool // the current message is a DataRow
	stall  *rowStall
	counts int // DataRows ended under stall
}

// scan advances over b. Under a stall (st non-nil) it stops right after the
// DataRow that makes the count reach limit and reports hold; it returns how
// many bytes of b it consumed.
func (sc *msgScanner) scan(b []byte, st *rowStall, limit int) (n int, hold bool) {
	if st != sc.stall {
		sc.stall, sc.counts = st, 0
	}
	for n < len(b) {
		if sc.off {
			return len(b), false
		}
		if sc.start && sc.nhdr == 0 && (b[n] == 'N' || b[n] == 'S') {
			sc.off = b[n] == 'S'
			n++
			continue
		}
		if sc.nhdr < 5 {
			sc.hdr[sc.nhdr] = b[n]
			sc.nhdr++
			n++
			if sc.nhdr == 5 {
				sc.start = false
				sc.isRow = sc.hdr[0] == 'D'
				sc.left = int(binary.BigEndian.Uint32(sc.hdr[1:])) - 4
			}
		} else {
			k := min(sc.left, len(b)-n)
			sc.left -= k
			n += k
		}
		if sc.nhdr == 5 && sc.left <= 0 {
			sc.nhdr = 0
			if sc.isRow && st != nil {
				sc.counts++
				if sc.counts >= limit {
					return n, true
				}
			}
		}
	}
	return n, false
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.ln.Close()
	for pr := range p.pairs {
		pr.client.Close()
		pr.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
