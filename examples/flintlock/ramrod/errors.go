package ramrod

import (
	"errors"
	"fmt"
)

// ErrNotFound: the key is not set.
var ErrNotFound = errors.New("ramrod: not found")

// ErrConflict: a guarded write's condition did not hold; nothing was
// written. The error is a *ConflictError with the current revisions.
var ErrConflict = errors.New("ramrod: conflict")

// ErrCompacted: a watch asked for history the node no longer holds; list
// again and watch from the listing's revision. The error is a
// *CompactedError.
var ErrCompacted = errors.New("ramrod: revision compacted")

// ErrNotLeader: no leader could be reached (an election may be running).
var ErrNotLeader = errors.New("ramrod: no leader")

// ErrUnauthorized: the admin API refused the token (401) or is closed (403).
var ErrUnauthorized = errors.New("ramrod: unauthorized")

// ErrUnavailable: the node could not serve now (503: no quorum, shutting
// down), or no endpoint could be reached.
var ErrUnavailable = errors.New("ramrod: unavailable")

// ErrBadRequest: the node refused the request as malformed (400); the
// message names what is wrong.
var ErrBadRequest = errors.New("ramrod: bad request")

// ConflictError is a failed guard: the store's revision and the key's mod
// revision when it was evaluated (0: the key was absent).
type ConflictError struct {
	Revision    uint64
	ModRevision uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("ramrod: conflict: the key's mod revision is %d (0: absent), the store's revision %d", e.ModRevision, e.Revision)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// CompactedError is a watch from before what the node holds.
type CompactedError struct {
	// Oldest is the oldest revision a watch may start from.
	Oldest uint64
	// Current is the node's revision.
	Current uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("ramrod: revision compacted: the node serves watches from revision %d on (current %d)", e.Oldest, e.Current)
}

// Is makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// StatusError is an error answer: the status, the node's message and
// which of the errors above it is, if any.
type StatusError struct {
	URL     string
	Status  int
	Message string
	kind    error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("ramrod: %s answered %d: %s", e.URL, e.Status, e.Message)
}

// Unwrap gives the kind (ErrNotFound, ErrBadRequest, ...).
func (e *StatusError) Unwrap() error { return e.kind }
