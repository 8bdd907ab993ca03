package policy

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Size bounds on what Load reads. Policies are written by hand or
// generated from a few thousand routes (10,000 routes take about 3 MB);
// yaml.v3 holds roughly twenty times a file's size while decoding it, so
// a larger file is far more likely a mistake (a log or a dump written to
// the policy directory) than a policy, and reading it would cost the
// control plane gigabytes.
const (
	maxFileSize  = 16 << 20
	maxTotalSize = 64 << 20
)

type skipKey struct{}

// WithSkipReport returns a context under which Load calls report for each
// file of a policy directory it leaves out because it is not a regular
// file (a FIFO, socket or device named like a policy), naming it and
// saying why. Such a file is never opened: opening a FIFO waits for a
// writer, which would freeze a reload. Load has no logger of its own; the
// caller logs.
func WithSkipReport(ctx context.Context, report func(path, reason string)) context.Context {
	return context.WithValue(ctx, skipKey{}, report)
}

func reportSkip(ctx context.Context, path, reason string) {
	if f, ok := ctx.Value(skipKey{}).(func(string, string)); ok && f != nil {
		f(path, reason)
	}
}

// fileKind names a non-regular file mode for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "not a regular file"
	}
}

// readFile reads a policy or endpoints file, refusing anything but a
// regular file of at most maxFileSize before opening it.
func readFile(path string) ([]byte, error) {
	info, err := os.Stat(path) // follows links, never blocks
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: %s, not a regular file", path, fileKind(info.Mode()))
	}
	if info.Size() > maxFileSize {
		return nil, fmt.Errorf("read %s: %d bytes, more than the %d MiB a policy file may have", path, info.Size(), maxFileSize>>20)
	}
	// The path may be replaced by a FIFO between Stat and open: with
	// O_NONBLOCK, opening one returns at once instead of waiting for a
	// writer (regular files ignore the flag).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	} else if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: %s, not a regular file", path, fileKind(info.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("read %s: more than the %d MiB a policy file may have", path, maxFileSize>>20)
	}
	return data, nil
}

// expand turns paths into policy files: files as given, directories
// walked. In a directory, hidden files and directories are left out (as
// the watcher ignores them: editor swap and lock files, and the
// timestamped copies behind a Kubernetes ConfigMap's "..data" link), and
// so are entries that are not regular files, each reported through ctx
// (WithSkipReport). A path given by name must be a regular file or a
// directory.
func expand(ctx context.Context, paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: %s, not a regular file", p, fileKind(info.Mode()))
			}
			files = append(files, filepath.Clean(p))
			continue
		}
		found, err := walk(ctx, p)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", p)
		}
		files = append(files, found...)
	}
	return files, nil
}

// walk lists the policy files under dir, sorted.
func walk(ctx context.Context, dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		mode := d.Type()
		if mode&fs.ModeSymlink != 0 {
			info, err := os.Stat(path)
			if err != nil {
				return err // a dangling link named like a policy is an error, as a missing file is
			}
			mode = info.Mode()
		}
		if !mode.IsRegular() {
			reportSkip(ctx, path, fileKind(mode)+", not a regular file")
			return nil
		}
		found = append(found, path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(found)
	return found, nil
}
