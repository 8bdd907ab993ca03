package repository

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func joinDir(dir, ver string) string { return filepath.Join(dir, ver) }

// Load (re)reads DIR/name from disk, config and versions, replacing what
// was loaded before, and loads its latest version. It also picks up a model
// added to the directory after New, and clears a remembered load failure.
func (r *Repository) Load(ctx context.Context, name string) error {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("model name %q: want a directory name in the repository: %w", name, ErrNotFound)
	}
	if fi, err := os.Stat(filepath.Join(r.opts.Dir, name)); err != nil || !fi.IsDir() {
		return fmt.Errorf("model %q %w in the repository", name, ErrNotFound)
	}
	fresh := r.scanModel(name)
	r.mu.Lock()
	old := *r.models.Load()
	next := maps.Clone(old)
	next[name] = fresh
	r.models.Store(&next)
	var closed []*Loaded
	if prev := old[name]; prev != nil {
		for _, v := range prev.versions {
			if l := r.unloadLocked(v); l != nil {
				closed = append(closed, l)
			}
		}
	}
	r.mu.Unlock()
	for _, l := range closed {
		l.close()
	}
	if fresh.configErr != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, r.rel(fresh.configErr))
	}
	v, err := fresh.version("")
	if err != nil {
		return err
	}
	_, err = r.load(ctx, v, true)
	return err
}

// Unload unloads every version of name. Until the next Load the model
// answers ErrUnavailable instead of loading again on use, as Triton's
// explicit unload does.
func (r *Repository) Unload(ctx context.Context, name string) error {
	m, err := r.lookup(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	var closed []*Loaded
	for _, v := range m.versions {
		// A load in progress finishes first, so that it cannot land after
		// the unload.
		for v.loading != nil {
			ch := v.loading
			r.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("unload model %q: %w", name, ctx.Err())
			}
			r.mu.Lock()
		}
		if l := r.unloadLocked(v); l != nil {
			closed = append(closed, l)
		}
		v.err = errUnloaded
	}
	r.mu.Unlock()
	for _, l := range closed {
		l.close()
	}
	return nil
}

var errUnloaded = fmt.Errorf("unloaded by request; load it again with RepositoryModelLoad")

// Index reasons of versions that are UNAVAILABLE without a failure:
// Triton's reason for an unloaded version, and ours for one that loads on
// first use (Maestro loads lazily; Triton lists such models without a
// state).
const (
	ReasonUnloaded  = "unloaded"
	ReasonNotLoaded = "not loaded yet; loads on first use"
)

// relError shows paths inside the repository relative to its root, so
// that answers do not disclose the server's file system layout.
type relError struct {
	err  error
	root string
}

func (e *relError) Error() string { return strings.ReplaceAll(e.err.Error(), e.root, "") }
func (e *relError) Unwrap() error { return e.err }

// rel wraps err so that its message names repository paths relative to
// the repository root.
func (r *Repository) rel(err error) error {
	if err == nil || r.root == "" {
		return err
	}
	return &relError{err: err, root: r.root}
}

// IndexEntry is one model version in the repository index.
type IndexEntry struct {
	Name    string
	Version string // "" for a model whose config is broken
	State   State
	Reason  string
}

// Index lists every model version, sorted by name then version; readyOnly
// keeps the loaded ones.
func (r *Repository) Index(readyOnly bool) []IndexEntry {
	models := *r.models.Load()
	names := make([]string, 0, len(models))
	for n := range models {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []IndexEntry
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		m := models[n]
		if m.configErr != nil {
			if !readyOnly {
				out = append(out, IndexEntry{Name: n, State: Unavailable, Reason: r.rel(m.configErr).Error()})
			}
			continue
		}
		for _, v := range m.versions {
			e := IndexEntry{Name: n, Version: v.str, State: Unavailable}
			switch {
			case v.ready.Load() != nil:
				e.State = Ready
			case v.loading != nil:
				e.State = Loading
			case errors.Is(v.err, errUnloaded):
				e.Reason = ReasonUnloaded
			case v.err != nil:
				e.Reason = r.rel(v.err).Error()
			default:
				e.Reason = ReasonNotLoaded
			}
			if readyOnly && e.State != Ready {
				continue
			}
			out = append(out, e)
		}
	}
	return out
}
