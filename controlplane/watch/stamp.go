package watch

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Stamp fingerprints the inputs at paths (files, and directories with
// their visible subdirectories) by every file's name, size, mode and
// modification time, without opening anything. Two equal stamps taken
// around a read mean no file changed while it was read: a save that is
// still being written (truncate, then write in several steps) gives a
// different stamp, and the read is retried rather than applied half-way.
// Paths that cannot be examined are part of the stamp by their error.
func Stamp(paths ...string) string {
	var b strings.Builder
	entry := func(path string, info fs.FileInfo, err error) {
		if err != nil {
			fmt.Fprintf(&b, "%s\x00error %v\n", path, err)
			return
		}
		fmt.Fprintf(&b, "%s\x00%d %v %d\n", path, info.Size(), info.Mode(), info.ModTime().UnixNano())
	}
	for _, p := range paths {
		info, err := os.Stat(p) // follows links: a ConfigMap's files are links
		if err != nil || !info.IsDir() {
			entry(p, info, err)
			continue
		}
		_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				entry(path, nil, err)
				return nil
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			info, err := os.Stat(path)
			entry(path, info, err)
			return nil
		})
	}
	return b.String()
}
