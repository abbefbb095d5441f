package jobwatch

import "sync"

// collector gathers the entries of one multi-job wait as they settle, so
// WaitAny and WaitEach learn which job settled in O(1) instead of scanning
// every entry on each wake-up.
type collector struct {
	mu     sync.Mutex
	ready  []*entry
	signal chan struct{} // capacity 1: "ready is not empty"
}

func newCollector() *collector { return &collector{signal: make(chan struct{}, 1)} }

// push records a settled entry. It never blocks: it is called by resolve
// with the Watcher's lock held.
func (c *collector) push(e *entry) {
	c.mu.Lock()
	c.ready = append(c.ready, e)
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// drain returns and forgets the entries settled since the last drain.
func (c *collector) drain() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ready
	c.ready = nil
	return out
}
