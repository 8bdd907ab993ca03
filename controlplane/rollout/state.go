package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Phases of a rollout.
const (
	// PhaseProgressing is a rollout walking its steps.
	PhaseProgressing = "progressing"
	// PhasePromoted is a rollout whose last step (100) passed; the version
	// keeps all the traffic until the route is edited.
	PhasePromoted = "promoted"
	// PhaseFailed is a rollout rolled back to 0; it stays there until the
	// route is edited.
	PhaseFailed = "failed"
)

// StateFile is the name of the rollout state in the state directory.
const StateFile = "rollouts.json"

// stateVersion is the layout of StateFile; a file of another layout is
// refused rather than misread.
const stateVersion = 1

// State is one route's rollout as persisted: enough to resume it after a
// restart, or on another replica taking the lease over.
type State struct {
	Route string `json:"route"`
	// Spec is the hash of the route's spec the rollout follows: an edit of
	// the route changes it and restarts the rollout.
	Spec    string   `json:"spec"`
	Service string   `json:"service"`
	Stable  string   `json:"stable"`
	Version string   `json:"version"`
	Steps   []uint32 `json:"steps"`
	Phase   string   `json:"phase"`
	// Step indexes Steps; Weight is the version's share now (0 when
	// failed).
	Step          int       `json:"step"`
	Weight        uint32    `json:"weight"`
	Started       time.Time `json:"started"`
	StepStarted   time.Time `json:"stepStarted"`
	NextJudgement time.Time `json:"nextJudgement"`
	// Requests and Errors are the version's counts over the completed
	// steps: with the current step's, the slow burn rate's numerator.
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// Last is the latest decision and why.
	LastDecision string    `json:"lastDecision"`
	LastReason   string    `json:"lastReason"`
	Updated      time.Time `json:"updated"`
}

type stateDoc struct {
	Version  int               `json:"version"`
	Rollouts map[string]*State `json:"rollouts"`
}

// loadState reads the state file; a missing file is no rollouts.
func loadState(dir string) (map[string]*State, error) {
	path := filepath.Join(dir, StateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rollout state: %w", err)
	}
	var d stateDoc
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("read rollout state %s: %w", path, err)
	}
	if d.Version != stateVersion {
		return nil, fmt.Errorf("read rollout state %s: layout version %d, want %d", path, d.Version, stateVersion)
	}
	if d.Rollouts == nil {
		d.Rollouts = map[string]*State{}
	}
	return d.Rollouts, nil
}

// saveState writes the state file atomically: a reader (a follower, or
// this process after a crash) sees the old file or the new one, never a
// part.
func saveState(dir string, rs map[string]*State) error {
	data, err := json.MarshalIndent(stateDoc{Version: stateVersion, Rollouts: rs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode rollout state: %w", err)
	}
	return writeAtomic(filepath.Join(dir, StateFile), append(data, '\n'))
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, then syncs the directory so the rename survives a
// crash.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
	return nil
}
