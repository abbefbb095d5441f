package queue

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// NewJob is a job to enqueue: the columns of PgQueuer's queue table a
// producer sets.
type NewJob struct {
	// Entrypoint names the function a worker runs. Required: valid UTF-8,
	// no NUL byte.
	Entrypoint string
	// Payload is given to the worker as is. Empty (nil or zero length) is
	// stored as NULL and read back as nil.
	Payload []byte
	// Priority: higher is claimed first. It must fit in a PostgreSQL int
	// (32 bits).
	Priority int
	// ExecuteAfter delays the job: it is not claimed before now plus this.
	// Not negative; PostgreSQL keeps microseconds.
	ExecuteAfter time.Duration
	// DedupeKey, when not empty, must be unique among queued and picked
	// jobs: enqueueing a second one fails with a *DuplicateError naming the
	// first. Valid UTF-8, no NUL byte.
	DedupeKey string
	// Headers are stored as a JSON object (nil: NULL). They must encode
	// with encoding/json.
	Headers map[string]any
}

// Validate reports whether j can be enqueued: nil, or an error matching
// ErrInvalidJob that says why.
func (j NewJob) Validate() error {
	if j.Entrypoint == "" {
		return fmt.Errorf("%w: empty entrypoint", ErrInvalidJob)
	}
	if err := checkText("entrypoint", j.Entrypoint); err != nil {
		return err
	}
	if err := checkText("dedupe key", j.DedupeKey); err != nil {
		return err
	}
	if j.Priority < math.MinInt32 || j.Priority > math.MaxInt32 {
		return fmt.Errorf("%w: priority %d out of range of a 32-bit int", ErrInvalidJob, j.Priority)
	}
	if j.ExecuteAfter < 0 {
		return fmt.Errorf("%w: negative ExecuteAfter %v", ErrInvalidJob, j.ExecuteAfter)
	}
	if _, err := j.HeadersJSON(); err != nil {
		return err
	}
	return nil
}

// HeadersJSON returns Headers encoded as they are stored: nil for nil
// Headers, else a JSON object. Headers that do not encode return an error
// matching ErrInvalidJob.
func (j NewJob) HeadersJSON() (json.RawMessage, error) {
	if j.Headers == nil {
		return nil, nil
	}
	b, err := json.Marshal(j.Headers)
	if err != nil {
		return nil, fmt.Errorf("%w: headers: %v", ErrInvalidJob, err)
	}
	return b, nil
}

// CheckJobs validates one Enqueue's jobs, as every implementation does
// before writing anything: at least one job, each valid (an error matching
// ErrInvalidJob naming the first bad one's index), and no dedupe key twice
// (a *DuplicateError with ID 0 for the first repeat).
func CheckJobs(jobs []NewJob) error {
	if len(jobs) == 0 {
		return fmt.Errorf("%w: no jobs to enqueue", ErrInvalidJob)
	}
	for i, j := range jobs {
		if err := j.Validate(); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
	}
	var keys map[string]struct{}
	for i, j := range jobs {
		if j.DedupeKey == "" {
			continue
		}
		if keys == nil {
			keys = make(map[string]struct{})
		}
		if _, dup := keys[j.DedupeKey]; dup {
			return &DuplicateError{Index: i, Key: j.DedupeKey}
		}
		keys[j.DedupeKey] = struct{}{}
	}
	return nil
}

func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidJob, field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidJob, field)
	}
	return nil
}

// MaxClaimLimit bounds ClaimRequest.Limit.
const MaxClaimLimit = 100000

// ClaimRequest asks Claim for up to Limit queued jobs of the given
// entrypoints whose ExecuteAfter has passed.
type ClaimRequest struct {
	// Entrypoints to claim jobs of: at least one, none empty, each valid
	// UTF-8 without NUL.
	Entrypoints []string
	// Limit is the most jobs to claim: 1 to MaxClaimLimit.
	Limit int
	// QueueManagerID is recorded in the claimed jobs' queue_manager_id (a
	// UUID), as a PgQueuer worker records its own. The zero value records
	// NULL.
	QueueManagerID [16]byte
}

// Validate reports whether r can be run: nil, or an error matching
// ErrInvalidJob that says why.
func (r ClaimRequest) Validate() error {
	if len(r.Entrypoints) == 0 {
		return fmt.Errorf("%w: claim: no entrypoints", ErrInvalidJob)
	}
	for _, e := range r.Entrypoints {
		if e == "" {
			return fmt.Errorf("%w: claim: empty entrypoint", ErrInvalidJob)
		}
		if err := checkText("entrypoint", e); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
	}
	if r.Limit <= 0 || r.Limit > MaxClaimLimit {
		return fmt.Errorf("%w: claim: limit %d outside 1..%d", ErrInvalidJob, r.Limit, MaxClaimLimit)
	}
	return nil
}

// Job is a row of the queue table: a job that has not ended yet (queued,
// picked or held). PostgreSQL deletes the row when the job ends; its log
// stays (see JobInfo).
type Job struct {
	ID         jobwatch.JobID
	Priority   int
	Entrypoint string
	// Payload is nil when NULL.
	Payload []byte
	// Headers is the stored JSON object, as the database prints it (nil
	// when NULL).
	Headers json.RawMessage
	Status  statemachine.State
	// Attempts counts retries (Retry adds one, Requeue resets it).
	Attempts int
	// DedupeKey is empty when NULL.
	DedupeKey string
	// QueueManagerID is the claiming worker's id (zero when NULL).
	QueueManagerID [16]byte
	Created        time.Time
	Updated        time.Time
	// Heartbeat is when a worker last said it was alive (set by the claim
	// and by Heartbeat).
	Heartbeat    time.Time
	ExecuteAfter time.Time
}
