package pgx_test

import (
	"testing"

	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/queue"
)

// TestQueueConformance runs the write-side conformance check on a fresh
// installation per case: the same script, with the same results, as on
// backends/fake and backends/pq.
func TestQueueConformance(t *testing.T) {
	conformance.RunQueue(t, func(t *testing.T) queue.Queue { return newEnv(t).b })
}
