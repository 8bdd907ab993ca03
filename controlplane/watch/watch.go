// Package watch reports changes to the control plane's input files
// (policy files and directories, endpoint files) as debounced batches, so
// that an editor's write-rename-chmod sequence or a `kubectl cp` of ten
// files causes one reload, not ten.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the watcher waits after the last event
// before reloading: long enough to coalesce one editor save (several
// events within a few milliseconds), short enough that a change reaches
// clients well within a second.
const DefaultDebounce = 100 * time.Millisecond

// Config says what to watch.
type Config struct {
	// Paths are files or directories. A file is watched through its
	// directory, so that editors replacing it by rename are seen; a
	// directory is watched with its subdirectories.
	Paths []string
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	Logger   *slog.Logger
}

// Watcher watches Config.Paths. Its watches are in place when New
// returns, so a change made after New is never missed.
type Watcher struct {
	fw       *fsnotify.Watcher
	debounce time.Duration
	log      *slog.Logger
	// files are the watched files (cleaned); dirs the watched directories
	// whose every file counts; parents the directories watched only for
	// the files in them.
	files   map[string]bool
	dirs    map[string]bool
	parents map[string]bool
}

// New starts watching cfg.Paths. Call Run to receive changes and Close
// (or let Run return) to release the watches.
//
// # Errors
//
// New fails if a path does not exist or cannot be watched.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("watch: no paths")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{fw: fw, debounce: cfg.Debounce, log: cfg.Logger, files: map[string]bool{}, dirs: map[string]bool{}, parents: map[string]bool{}}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	for _, p := range cfg.Paths {
		if err := w.add(filepath.Clean(p)); err != nil {
			_ = fw.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *Watcher) add(p string) error {
	info, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("watch %s: %w", p, err)
	}
	if !info.IsDir() {
		w.files[p] = true
		w.parents[filepath.Dir(p)] = true
		if err := w.fw.Add(filepath.Dir(p)); err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		return nil
	}
	return filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("watch %s: %w", path, err)
		}
		if !d.IsDir() {
			return nil
		}
		if path != p && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		w.dirs[path] = true
		if err := w.fw.Add(path); err != nil {
			return fmt.Errorf("watch %s: %w", path, err)
		}
		return nil
	})
}

// relevant reports whether an event on name concerns a watched input.
// Hidden files and editor backups (".x.swp", "x~") in watched directories
// are ignored; a watched file counts whatever its name. Names starting
// with ".." always count: Kubernetes mounts a ConfigMap as symlinks
// through "..data", and an update only swaps that link, so the files
// themselves see no event.
func (w *Watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if w.files[name] {
		return true
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	if strings.HasPrefix(base, "..") && (w.dirs[dir] || w.parents[dir]) {
		return true
	}
	if !w.dirs[dir] && !w.dirs[name] {
		return false
	}
	return !strings.HasPrefix(base, ".") && !strings.HasSuffix(base, "~")
}

// Run calls reload once after each burst of relevant changes, until ctx
// is done; it then closes the watcher and returns nil. reload runs on
// Run's goroutine, so reloads never overlap; changes that arrive during
// a reload cause one more. A reload error is reload's own business (it
// logs and counts it); Run carries on watching.
func (w *Watcher) Run(ctx context.Context, reload func(context.Context)) error {
	defer w.Close()
	timer := time.NewTimer(w.debounce)
	if !timer.Stop() {
		<-timer.C
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fw.Events:
			if !ok {
				return errors.New("watch: event channel closed")
			}
			if !w.relevant(ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Create) && w.dirs[filepath.Dir(filepath.Clean(ev.Name))] {
				w.addNewDir(ev.Name)
			}
			w.log.Debug("input changed", "path", ev.Name, "op", ev.Op.String())
			timer.Reset(w.debounce)
		case err, ok := <-w.fw.Errors:
			if !ok {
				return errors.New("watch: error channel closed")
			}
			// An overflow means events were lost: reload to be safe.
			w.log.Warn("file watch error; reloading to be safe", "error", err)
			timer.Reset(w.debounce)
		case <-timer.C:
			reload(ctx)
		}
	}
}

// addNewDir watches a directory created inside a watched one.
func (w *Watcher) addNewDir(name string) {
	info, err := os.Stat(name)
	if err != nil || !info.IsDir() {
		return
	}
	if err := w.add(filepath.Clean(name)); err != nil {
		w.log.Warn("cannot watch new directory", "path", name, "error", err)
	}
}

// Add watches more paths (files or directories), e.g. an endpoints file a
// policy edit started naming. Call it before Run or from Run's reload
// callback (which runs on Run's goroutine), never concurrently with Run
// otherwise. Paths already watched are skipped.
//
// # Errors
//
// A path that does not exist or cannot be watched; paths before it stay
// watched.
func (w *Watcher) Add(paths ...string) error {
	for _, p := range paths {
		p = filepath.Clean(p)
		if w.files[p] || w.dirs[p] {
			continue
		}
		if err := w.add(p); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the watches.
func (w *Watcher) Close() error { return w.fw.Close() }
