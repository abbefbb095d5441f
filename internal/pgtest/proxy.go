package pgtest

import (
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
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	blackholed     atomic.Bool
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
	p := &Proxy{ln: ln, target: target, pairs: map[*pair]struct{}{}}
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
		go p.pipe(pr, c, s)
		go p.pipe(pr, s, c)
	}
}

// pipe copies src to dst until either fails, discarding what it reads while
// the pair is blackholed.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pr.blackholed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
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

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for pr := range p.pairs {
		pr.client.Close()
		pr.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
