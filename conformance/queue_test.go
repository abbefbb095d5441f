package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/backends/fake"
	"github.com/jobwatch/jobwatch/conformance"
	"github.com/jobwatch/jobwatch/queue"
)

func newFakeQueue(t *testing.T) *fake.Backend {
	b := fake.New()
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestQueueFake(t *testing.T) {
	conformance.RunQueue(t, func(t *testing.T) queue.Queue { return newFakeQueue(t) })
}

// divergentQueues are the fake with one difference from the others each.
// RunQueue must fail on every one, at the steps that show the difference.
var divergentQueues = []struct {
	name     string
	defect   string
	wrap     func(b *fake.Backend) queue.Queue
	wantFail []string // script steps that must report it
}{
	{
		name:     "plain_unknown_job",
		defect:   "Complete of an unknown job returns an error of its own (the fake's before the job API)",
		wrap:     func(b *fake.Backend) queue.Queue { return plainUnknownJob{b} },
		wantFail: []string{"complete of an unknown job"},
	},
	{
		name:     "anonymous_duplicate",
		defect:   "a dedupe conflict matches ErrDuplicate but does not name the holder",
		wrap:     func(b *fake.Backend) queue.Queue { return anonymousDuplicate{b} },
		wantFail: []string{"enqueue of a held dedupe key", "batch enqueue with a held dedupe key"},
	},
	{
		name:     "repeated_ids_twice",
		defect:   "a repeated id is transitioned twice (so the second time is illegal)",
		wrap:     func(b *fake.Backend) queue.Queue { return repeatedTwice{b} },
		wantFail: []string{"requeue, the id repeated", "delete, the id repeated"},
	},
}

type plainUnknownJob struct{ *fake.Backend }

func (q plainUnknownJob) Complete(ctx context.Context, ids ...jobwatch.JobID) error {
	for _, id := range ids {
		if _, ok := q.State(id); !ok && id > 0 {
			return errors.New("fake: unknown job")
		}
	}
	return q.Backend.Complete(ctx, ids...)
}

type anonymousDuplicate struct{ *fake.Backend }

func (q anonymousDuplicate) Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error) {
	ids, err := q.Backend.Enqueue(ctx, jobs...)
	if errors.Is(err, queue.ErrDuplicate) {
		return nil, fmt.Errorf("enqueue: %w", queue.ErrDuplicate)
	}
	return ids, err
}

type repeatedTwice struct{ *fake.Backend }

// each applies f to one id at a time, so a repeated id meets the state the
// first application left.
func (q repeatedTwice) each(ctx context.Context, f func(context.Context, ...jobwatch.JobID) error, ids []jobwatch.JobID) error {
	for _, id := range ids {
		if err := f(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (q repeatedTwice) Requeue(ctx context.Context, ids ...jobwatch.JobID) error {
	return q.each(ctx, q.Backend.Requeue, ids)
}

func (q repeatedTwice) Delete(ctx context.Context, ids ...jobwatch.JobID) error {
	return q.each(ctx, q.Backend.Delete, ids)
}

// divergentEnv selects the queue TestQueueDivergentChild runs RunQueue on.
const divergentEnv = "JOBWATCH_CONFORMANCE_DIVERGENT"

// TestQueueDivergentChild runs RunQueue on the divergent queue named by
// JOBWATCH_CONFORMANCE_DIVERGENT. It only does something in the subprocess
// TestQueueDivergentBackendsAreReported starts; it is expected to fail there.
func TestQueueDivergentChild(t *testing.T) {
	name := os.Getenv(divergentEnv)
	if name == "" {
		t.Log("helper of TestQueueDivergentBackendsAreReported: does something only in its subprocess")
		return
	}
	for _, d := range divergentQueues {
		if d.name == name {
			conformance.RunQueue(t, func(t *testing.T) queue.Queue { return d.wrap(newFakeQueue(t)) })
			return
		}
	}
	t.Fatalf("unknown divergent queue %q", name)
}

var failedStep = regexp.MustCompile(`(?m)^\s+queue\w*\.go:\d+: step \d+, (.+):$`)

func TestQueueDivergentBackendsAreReported(t *testing.T) {
	if os.Getenv(divergentEnv) != "" {
		return // we are the child
	}
	for _, d := range divergentQueues {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestQueueDivergentChild$", "-test.count=1", "-test.timeout=50s")
			cmd.Env = append(os.Environ(), divergentEnv+"="+d.name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("RunQueue passed (or could not run: %v) on a queue where %s\n%s", err, d.defect, out)
			}
			failed := map[string]bool{}
			for _, m := range failedStep.FindAllStringSubmatch(string(out), -1) {
				failed[m[1]] = true
			}
			for _, step := range d.wantFail {
				if !failed[step] {
					t.Errorf("queue where %s: step %q did not fail\n%s", d.defect, step, out)
				}
			}
			steps := make([]string, 0, len(failed))
			for s := range failed {
				steps = append(steps, s)
			}
			t.Logf("queue where %s: RunQueue failed steps %s", d.defect, strings.Join(steps, "; "))
		})
	}
}
